/**
 * Secret handling at the edge (docs/security.md#secrets):
 *
 * - `*_FILE` variables (the Docker / Kubernetes secrets convention): `DATABASE_URL_FILE`,
 *   `MQTT_URL_FILE` and `MQTT_PASSWORD_FILE` name a file whose content (trailing newline
 *   trimmed) is the value of the variable without `_FILE`.
 * - A warning when a password is on the command line, where `ps` shows it to everyone.
 * - `--print-config`: the resolved configuration, where each value came from, secrets
 *   masked.
 * - The secrets of a configuration, for masking error messages (`main.ts`).
 */
import { FeedlineError } from "../errors.ts";
import { expandSecrets, redactText, redactUrl, secretsOfUrl } from "../log.ts";
import { option, type OptionSpec, resolveOptions, zs } from "./options.ts";
import { describeReadError } from "../errors.ts";

/** Variables that may instead be given as `<NAME>_FILE`. */
export const FILE_VARIABLES = ["DATABASE_URL", "MQTT_URL", "MQTT_PASSWORD"] as const;

/** Secrets read from files: the environment with them filled in, and which came from where. */
export interface SecretFiles {
  env: Record<string, string | undefined>;
  /** Variable → the file it was read from. */
  fromFile: Record<string, string>;
}

/**
 * Fills `DATABASE_URL` etc. from `DATABASE_URL_FILE` etc. Throws CONFIG_INVALID when a
 * file cannot be read or both the variable and its `_FILE` are set.
 */
export async function readSecretFiles(
  env: Record<string, string | undefined>,
): Promise<SecretFiles> {
  const out = { ...env };
  const fromFile: Record<string, string> = {};
  for (const name of FILE_VARIABLES) {
    const path = env[`${name}_FILE`];
    if (!path) continue;
    if (env[name]) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `both ${name} and ${name}_FILE are set; set one of them`,
      );
    }
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      const why = describeReadError(error);
      throw new FeedlineError("CONFIG_INVALID", `cannot read ${name}_FILE "${path}": ${why}`);
    }
    const value = text.replace(/\r?\n$/, "");
    if (value === "") {
      throw new FeedlineError("CONFIG_INVALID", `${name}_FILE "${path}" is empty`);
    }
    out[name] = value;
    fromFile[name] = path;
  }
  return { env: out, fromFile };
}

let applied: Record<string, string> = {};

/**
 * `readSecretFiles` on the process environment, setting the variables it read (for
 * every command at once: `main.ts` calls it before dispatching). Returns, and remembers
 * for `appliedSecretFiles`, which variables came from which file.
 */
export async function applySecretFiles(): Promise<SecretFiles> {
  const secrets = await readSecretFiles(Deno.env.toObject());
  for (const name of Object.keys(secrets.fromFile)) {
    Deno.env.set(name, secrets.env[name]!);
    Deno.env.delete(`${name}_FILE`);
  }
  applied = secrets.fromFile;
  return secrets;
}

/** The variables `applySecretFiles` filled in, and the files they came from. */
export function appliedSecretFiles(): Record<string, string> {
  return { ...applied };
}

/** The value of `--flag` in `args` (`--flag v` or `--flag=v`), if given. */
function flagValue(args: string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") break;
    if (args[i] === `--${flag}`) return args[i + 1];
    if (args[i].startsWith(`--${flag}=`)) return args[i].slice(flag.length + 3);
  }
  return undefined;
}

/** Flags whose value is a URL that may carry a password. */
const URL_FLAGS = ["database-url", "mqtt-url"];

/** One warning per password given on the command line (visible in `ps`). */
export function commandLineSecretWarnings(args: string[]): string[] {
  const warnings: string[] = [];
  if (flagValue(args, "mqtt-password") !== undefined) {
    warnings.push(
      "--mqtt-password on the command line is visible to every user of this machine (ps); " +
        "use MQTT_PASSWORD or MQTT_PASSWORD_FILE instead",
    );
  }
  for (const flag of URL_FLAGS) {
    const value = flagValue(args, flag);
    if (value !== undefined && secretsOfUrl(value).length > 0) {
      const variable = flag.toUpperCase().replaceAll("-", "_");
      warnings.push(
        `--${flag} holds a password, visible to every user of this machine (ps); ` +
          `use ${variable} or ${variable}_FILE instead`,
      );
    }
  }
  return warnings;
}

/**
 * Every secret in a command line and environment: passwords, and the passwords and
 * token-like parameters of URLs. For masking what is printed (`redactText`).
 */
export function secretsOf(args: string[], env: Record<string, string | undefined>): string[] {
  const out: string[] = [];
  for (const password of [flagValue(args, "mqtt-password"), env.MQTT_PASSWORD]) {
    if (password) out.push(password);
  }
  for (const flag of URL_FLAGS) {
    const variable = flag.toUpperCase().replaceAll("-", "_");
    out.push(...secretsOfUrl(flagValue(args, flag)), ...secretsOfUrl(env[variable]));
  }
  return expandSecrets(out);
}

/** Masks the secrets of `args` and `env` in `text`. */
export function redactSecrets(
  text: string,
  args: string[],
  env: Record<string, string | undefined>,
): string {
  return redactText(text, secretsOf(args, env));
}

/** The `--print-config` switch, spread into a command's option table. */
export const printConfigOptions = {
  printConfig: option({
    flag: "print-config",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Print the resolved configuration (value and where it came from; secrets masked), " +
      "then exit.",
    boolean: true,
  }),
};

/**
 * The resolved configuration as text: one line per option with its value (secrets
 * masked) and where it came from (flag, environment variable, file, default).
 */
export function formatConfig(
  specs: Record<string, OptionSpec>,
  args: string[],
  env: Record<string, string | undefined>,
  fromFile: Record<string, string>,
  command: string,
  /** Values a default's rule resolves to, by option key (src/cli/serve_print.ts). */
  resolved: Record<string, string> = {},
): string {
  const { values, sources } = resolveOptions(specs, args, env, command);
  const masked = secretsOf(args, env);
  const rows: [string, string, string][] = [];
  for (const [key, spec] of Object.entries(specs)) {
    if (key === "printConfig") continue;
    const value = (values as Record<string, unknown>)[key];
    const source = sources[key];
    let shown: string;
    if (source !== "flag" && source !== "env" && resolved[key] !== undefined) {
      shown = resolved[key];
    } else if (value === undefined) shown = `(${spec.defaultText})`;
    else if (spec.secret) {
      shown = typeof value === "string" && /^[a-z][a-z0-9+.-]*:\/\//i.test(value)
        ? redactUrl(value)
        : "***";
    } else shown = typeof value === "string" ? value : JSON.stringify(value);
    const from = source === "flag"
      ? `--${spec.flag}`
      : source === "env"
      ? (fromFile[spec.env!] ? `${spec.env}_FILE (${fromFile[spec.env!]})` : spec.env!)
      : "default";
    rows.push([spec.flag, shown, from]);
  }
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.min(60, Math.max(...rows.map((r) => r[1].length)));
  const text = rows.map(([f, v, s]) => `${f.padEnd(w0)}  ${v.padEnd(w1)}  ${s}`).join("\n");
  return redactText(text, masked);
}
