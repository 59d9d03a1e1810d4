/**
 * The database a one-shot command (`migrate`, `replay`, `rollups`, …) works on: the URL it
 * was given, else the embedded database of a `serve` running on the same data directory
 * (one process at a time opens it), else an embedded database of its own. Errors name where
 * the URL came from (`--database-url`, `DATABASE_URL`) or the serve it borrowed.
 *
 * @module
 */
import { databaseUrlOrRunningServe } from "../embedded/endpoints.ts";
import { type Database, openDatabase, type OpenDatabaseOptions } from "./database.ts";

/** The database settings every command parses (src/cli/option_groups.ts). */
export interface CommandDatabaseSettings {
  databaseUrl?: string;
  /** Where `databaseUrl` came from, for errors: see `databaseUrlFrom`. */
  databaseUrlFrom: string;
  dataDir: string;
  embeddedDbPort: number;
  dbPooler?: OpenDatabaseOptions["pooler"];
}

/** What differs between commands: who opens it, its pool, whether it migrates or writes. */
export type CommandDatabaseOptions =
  & Pick<
    OpenDatabaseOptions,
    "poolSize" | "migrate" | "dryRun" | "partitions" | "ingest"
  >
  & { command: string };

/** Opens the command's database (see the module doc). */
export async function openCommandDatabase(
  config: CommandDatabaseSettings,
  opts: CommandDatabaseOptions,
): Promise<Database> {
  const url = await databaseUrlOrRunningServe(config.databaseUrl, config.dataDir);
  return await openDatabase({
    url,
    urlFrom: config.databaseUrl ? config.databaseUrlFrom : `the serve using ${config.dataDir}`,
    dataDir: config.dataDir,
    embeddedPort: config.embeddedDbPort,
    pooler: config.dbPooler,
    ...opts,
  });
}
