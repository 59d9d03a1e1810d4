/**
 * The child process that makes a new embedded database and exits
 * (src/embedded/initdb_apart.ts): `deno run -A initdb_child.ts <pgdata directory>`.
 * Nothing imports this file.
 */
import { runInitdbChild } from "./initdb_apart.ts";

await runInitdbChild(Deno.args);
