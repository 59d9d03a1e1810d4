/**
 * Flags and environment variables, resolved in one place and in one order: flag, then
 * environment variable, then default. Each option is declared once, with its zod type
 * and its documentation; the parser, `--help` and the README table all come from the
 * same declaration, so they cannot drift (test/readme_test.ts checks the README).
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { FeedlineError } from "../errors.ts";

/** One option: a flag, optionally an environment variable, a type and a default. */
export interface OptionSpec<T extends z.ZodType = z.ZodType> {
  /** Flag name without dashes, e.g. `batch-size`. */
  flag: string;
  env?: string;
  /** zod schema the string value (or boolean for switches) must satisfy. */
  schema: T;
  /** Shown in help and docs; `undefined` means "unset". */
  defaultText: string;
  doc: string;
  /** A switch takes no value on the command line (`--verbose`). */
  boolean?: boolean;
  /**
   * A secret: a bad value is never repeated in the error. `"url"`: a URL that may hold a
   * password; a bad value is repeated with the password (and token-like query values)
   * masked.
   */
  secret?: boolean | "url";
  /**
   * A check of the parsed value that needs the environment (a database URL without a
   * host is fine only with PGHOST set). Returns what is wrong, worded to follow the name
   * of the flag or variable that gave the value, or null.
   */
  check?: (value: z.output<T>, env: Record<string, string | undefined>) => string | null;
}

/** Declares an option with its types inferred. */
export function option<T extends z.ZodType>(spec: OptionSpec<T>): OptionSpec<T> {
  return spec;
}

/** Common schemas for string input from flags and env. */
export const zs = {
  // A sign is accepted here so that `-1` fails on the bound ("at least 1"), not the form.
  int: (min: number, max = Number.MAX_SAFE_INTEGER) =>
    z.string().trim().regex(/^[+-]?\d+$/, "a whole number").transform(Number).pipe(
      z.number().int().min(min, `at least ${min}`).max(max, `at most ${max}`),
    ),
  bool: () =>
    z.union([z.boolean(), z.string().trim().toLowerCase()]).transform((v, ctx) => {
      if (typeof v === "boolean") return v;
      if (["1", "true", "yes", "on"].includes(v)) return true;
      if (["0", "false", "no", "off"].includes(v)) return false;
      ctx.addIssue({ code: "custom", message: "true or false" });
      return z.NEVER;
    }),
  url: (protocols: string[]) =>
    z.string().trim().refine((v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    }, `a URL starting with ${protocols.map((p) => p + "//").join(" or ")}`),
};

type Values<S extends Record<string, OptionSpec>> = {
  [K in keyof S]: z.output<S[K]["schema"]>;
};

/**
 * Parses `args` and `env` against the option table. Throws USAGE for an unknown flag and
 * CONFIG_INVALID naming the flag (or variable) and the expected form for a bad value.
 * Returns the values and the positional arguments.
 */
export function resolveOptions<S extends Record<string, OptionSpec>>(
  specs: S,
  args: string[],
  env: Record<string, string | undefined>,
  command: string,
): {
  values: Values<S>;
  positionals: string[];
  sources: Record<keyof S, "flag" | "env" | "default">;
} {
  const parseOptions: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const spec of Object.values(specs)) {
    parseOptions[spec.flag] = { type: spec.boolean ? "boolean" : "string" };
    if (spec.boolean) parseOptions[`no-${spec.flag}`] = { type: "boolean" };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, parseOptions),
      options: parseOptions,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify a positional.*$/s, "");
    throw new FeedlineError(
      "USAGE",
      `${message.split("\n")[0]}; see 'feedline ${command} --help'`,
      { cause: error },
    );
  }
  const values: Record<string, unknown> = {};
  const sources: Record<string, "flag" | "env" | "default"> = {};
  for (const [key, spec] of Object.entries(specs)) {
    let raw: unknown = parsed.values[spec.flag];
    let source: "flag" | "env" | "default" = "flag";
    let name = `--${spec.flag}`;
    if (spec.boolean && parsed.values[`no-${spec.flag}`] === true) raw = false;
    if (raw === undefined && spec.env && env[spec.env] !== undefined && env[spec.env] !== "") {
      raw = env[spec.env];
      source = "env";
      name = spec.env;
    }
    if (raw === undefined) source = "default";
    const result = spec.schema.safeParse(raw);
    if (!result.success) {
      const issue = result.error.issues[0];
      const shown = raw === undefined || (spec.secret && spec.secret !== "url")
        ? ""
        : ` (got ${JSON.stringify(spec.secret === "url" ? maskUrlSecrets(String(raw)) : raw)})`;
      const where = source === "default" ? `--${spec.flag}` : name;
      throw new FeedlineError(
        "CONFIG_INVALID",
        `${where} must be ${describeIssue(issue)}${shown}`,
      );
    }
    const problem = spec.check?.(result.data, env);
    if (problem) throw new FeedlineError("CONFIG_INVALID", `${name} ${problem}`);
    values[key] = result.data;
    sources[key] = source;
  }
  return {
    values: values as Values<S>,
    positionals: parsed.positionals,
    sources: sources as Record<keyof S, "flag" | "env" | "default">,
  };
}

/**
 * `--batch-size -1` would be refused by parseArgs as "ambiguous" (the value looks like a
 * flag): a negative number after a flag that takes a value is joined to it
 * (`--batch-size=-1`), so the value reaches its schema and the error names the bound.
 */
function joinNegativeValues(
  args: string[],
  options: Record<string, { type: "string" | "boolean" }>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const flag = arg.startsWith("--") ? arg.slice(2) : null;
    const next = args[i + 1];
    if (
      flag !== null && options[flag]?.type === "string" && next !== undefined &&
      /^-\d/.test(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/**
 * A URL as it may be shown in an error: whatever stands between the user's `:` and the
 * last `@` (the password, even in a malformed URL) and token-like query values masked.
 */
export function maskUrlSecrets(text: string): string {
  let out = text;
  const at = out.lastIndexOf("@");
  if (at >= 0) {
    const scheme = out.indexOf("://");
    const colon = out.indexOf(":", scheme >= 0 && scheme < at ? scheme + 3 : 0);
    if (colon >= 0 && colon < at) out = `${out.slice(0, colon)}:***${out.slice(at)}`;
  }
  return out.replace(/([?&;][^=&\s]*(?:pass|secret|token|key)[^=&\s]*=)[^&\s#]*/gi, "$1***");
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") return `set (${issue.expected})`;
  if (issue.code === "invalid_value") {
    return `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  return issue.message;
}

/** Renders the option table for `--help`. */
export function formatOptionsHelp(specs: Record<string, OptionSpec>): string {
  const rows = Object.values(specs).filter((s) => !s.secret || s.env).map((s) => {
    const left = `--${s.flag}${s.boolean ? "" : " <value>"}`;
    const env = s.env ? ` [${s.env}]` : "";
    return { left, right: `${s.doc}${env} (default: ${s.defaultText})` };
  });
  const width = Math.max(...rows.map((r) => r.left.length)) + 2;
  return rows.map((r) => `  ${r.left.padEnd(width)}${r.right}`).join("\n");
}

/** Renders the option table as Markdown, for the README. */
export function formatOptionsMarkdown(specs: Record<string, OptionSpec>): string {
  const lines = ["| flag | environment | default | meaning |", "|---|---|---|---|"];
  for (const s of Object.values(specs)) {
    lines.push(
      `| \`--${s.flag}\` | ${s.env ? `\`${s.env}\`` : ""} | ${s.defaultText} | ${
        s.doc.replaceAll("|", "\\|")
      } |`,
    );
  }
  return lines.join("\n");
}
