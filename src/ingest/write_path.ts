/**
 * @deprecated The old name of src/ingest/write/fast_or_careful.ts, kept until its last
 * importers (commands/serve.ts, tests) are renamed: import `FastOrCareful` from there.
 */
export { DEFAULT_CAREFUL_MS, FastOrCareful as WritePath } from "./write/fast_or_careful.ts";
