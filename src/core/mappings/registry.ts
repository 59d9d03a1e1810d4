/**
 * The payload formats mapping rules may name, by name (src/core/mappings/format.ts has
 * the contract; docs/architecture.md, "Where to add things").
 */
import { cborFormat } from "./cbor.ts";
import type { PayloadFormat } from "./format.ts";
import { sparkplugFormat } from "./sparkplug_format.ts";
import { jsonFormat, rawFormat } from "./text_formats.ts";

/** Every format rules may name. */
const FORMATS: readonly PayloadFormat[] = [jsonFormat, rawFormat, cborFormat, sparkplugFormat];

/**
 * Names kept for formats this build does not have yet (see the contract in format.ts): a
 * rule naming one is refused at start with a line that says so. Empty now that
 * `sparkplug` is here.
 */
export const RESERVED_FORMATS: readonly string[] = [];

const byName = new Map(FORMATS.map((f) => [f.name, f]));

/** The format named `name`, or null. */
export function formatNamed(name: string): PayloadFormat | null {
  return byName.get(name) ?? null;
}

/** The names rules may use now. */
export function formatNames(): string[] {
  return [...byName.keys()];
}
