/**
 * feedline's version: the one in deno.json, so a release bumps it in one place. Imported
 * as JSON, so it is inlined into the bundle and the compiled executable too.
 */
import denoJson from "../../deno.json" with { type: "json" };

/** The version of this feedline, e.g. `0.1.0`. */
export const VERSION: string = denoJson.version;
