/**
 * feedline: MQTT sensor data and device status into PostgreSQL.
 *
 * `main.ts` only dispatches to `commands/<name>.ts` and is the one place that prints an
 * error and exits.
 *
 * @module
 */
import { describeCauses, FeedlineError } from "./src/errors.ts";
import { VERSION } from "./src/cli/version.ts";
import { verboseFrom } from "./src/cli/option_groups.ts";
import { applySecretFiles, commandLineSecretWarnings, redactSecrets } from "./src/cli/secrets.ts";

/** src/embedded/initdb_apart.ts's INITDB_COMMAND (not imported: that module loads PGlite). */
const INITDB_COMMAND = "__embedded-initdb";

interface Command {
  help: string;
  run(args: string[]): Promise<void>;
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  serve: {
    summary: "ingest MQTT messages into PostgreSQL (embedded broker and database by default)",
    load: () => import("./commands/serve.ts"),
  },
  migrate: {
    summary: "apply the sql/ migrations (--status to list them)",
    load: () => import("./commands/migrate.ts"),
  },
  replay: {
    summary: "feed captured messages (or ingest_rejects) through the processor again",
    load: () => import("./commands/replay.ts"),
  },
  trace: {
    summary: "what became of each message of a device, a feed or a topic (stored, rejected, ...)",
    load: () => import("./commands/trace.ts"),
  },
  rollups: {
    summary: "recompute feed_rollups from the raw readings (--rebuild --since <time>)",
    load: () => import("./commands/rollups.ts"),
  },
  simulate: {
    summary: "publish the traffic of a simulated device fleet (demos, development, load tests)",
    load: () => import("./commands/simulate.ts"),
  },
};

const USAGE = `feedline — MQTT sensor data into PostgreSQL, fast and without losing a reading

Usage: feedline <command> [options]

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`).join("\n")}

Run 'feedline <command> --help' for its options, 'feedline --version' for the version.`;

async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  // Not a command: the child that makes a new embedded database (src/embedded/initdb_apart.ts).
  if (name === INITDB_COMMAND) {
    await (await import("./src/embedded/initdb_apart.ts")).runInitdbChild(rest);
    return 0;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    console.log(USAGE);
    return 0;
  }
  // No command is a usage mistake (exit 2, like an unknown one): scripts notice it.
  if (!name) {
    console.error(USAGE);
    return 2;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`feedline ${VERSION}`);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    console.error(
      `feedline: unknown command "${name}"; commands: ${Object.keys(COMMANDS).join(", ")}`,
    );
    return 2;
  }
  if (rest.includes("--version")) {
    console.log(`feedline ${VERSION}`);
    return 0;
  }
  const command = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.help);
    return 0;
  }
  // DATABASE_URL_FILE and the like (docs/security.md#secrets), for every command.
  await applySecretFiles();
  for (const warning of commandLineSecretWarnings(rest)) {
    console.error(`feedline: warning: ${warning}`);
  }
  await command.run(rest);
  return 0;
}

const verbose = verboseFrom(Deno.args, Deno.env.toObject());
try {
  Deno.exitCode = await main(Deno.args);
} catch (error) {
  const code = error instanceof FeedlineError ? error.code : "UNEXPECTED";
  // No secret is printed, whatever an error message picked up (docs/security.md#secrets).
  const redact = (text: string) => redactSecrets(text, Deno.args, Deno.env.toObject());
  const message = error instanceof Error ? error.message : String(error);
  console.error(redact(`feedline: ${message}`));
  if (verbose) {
    for (const line of describeCauses(error).slice(1)) {
      console.error(redact(`  caused by ${line}`));
    }
    if (error instanceof Error && error.stack) console.error(redact(error.stack));
  } else if (code === "UNEXPECTED") {
    console.error("(run with --verbose for details)");
  }
  Deno.exitCode = code === "USAGE" ? 2 : 1;
}
