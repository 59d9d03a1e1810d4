/**
 * The migrations carried inside a single-file bundle. `null` when running from source:
 * the files are read from `sql/`. `deno task bundle` (scripts/bundle.ts) swaps this module
 * for a generated one holding every `sql/*.sql` file, because a bundle has no `sql/`
 * folder beside it.
 */

/** File name → SQL text, or null to read `sql/`. */
export const BUNDLED_MIGRATIONS: Record<string, string> | null = null;
