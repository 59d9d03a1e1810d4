/**
 * The option groups commands are built from. Each group is a table of options (see
 * options.ts); a command spreads the groups it needs into its own table.
 */
import { z } from "zod";
import { maskUrlSecrets, option, zs } from "./options.ts";
import { type DecodeOptions, DEFAULT_MAX_TOPIC_LENGTH } from "../core/decode.ts";
import { DEFAULT_MAX_BULK_ENTRIES, DEFAULT_MAX_JSON_DEPTH } from "../core/payload.ts";
import { compileTopics, DEFAULT_TEMPLATES } from "../core/topics.ts";
import { compileMappings } from "../core/mappings/decode_mapped.ts";
import { FeedlineError } from "../errors.ts";
import { retentionSchema, type RetentionTiers, rollupsOption } from "./rollup_options.ts";

const PG_PROTOCOLS = ["postgres:", "postgresql:"];

/**
 * A PostgreSQL URL, or "" for `databaseUrlCheck` to refuse with its own words (an empty
 * environment variable never gets here: it means unset, src/cli/options.ts).
 */
export const pgUrlSchema = z.string().trim().refine(
  (v) => v === "" || zs.url(PG_PROTOCOLS).safeParse(v).success,
  `a URL starting with ${PG_PROTOCOLS.map((p) => p + "//").join(" or ")}`,
);

/**
 * A database URL must name its server. An empty one, or one without a host (`postgres://`,
 * what `postgres://$HOST/db` becomes when HOST is unset) lets the driver fill in the local
 * server, where feedline would migrate and write. Refused unless
 * PGHOST names the server: libpq's defaults, which the driver reads (it does not read
 * PGHOSTADDR). `unset` says what leaving the option unset means.
 */
export function databaseUrlCheck(unset: string) {
  return (url: string | undefined, env: Record<string, string | undefined>): string | null => {
    if (url === undefined) return null;
    const remedy = `give the server's URL (postgres://user@host:5432/db), or leave it unset ` +
      `for ${unset}`;
    if (url === "") return `is empty; ${remedy}`;
    if (new URL(url).hostname !== "" || env.PGHOST) return null;
    const hostaddr = env.PGHOSTADDR ? " (PGHOSTADDR is not read)" : "";
    return `names no server (got "${maskUrlSecrets(url)}"), so the driver would pick the ` +
      `local one; ${remedy}, or set PGHOST${hostaddr} if you mean libpq's defaults`;
  };
}

/** Which option gave the database URL, for errors (src/db/database.ts `urlFrom`). */
export function databaseUrlFrom(source: "flag" | "env" | "default"): string {
  return source === "flag" ? "--database-url" : "DATABASE_URL";
}

/** Where the database is, and how the schema is kept. */
export const databaseOptions = {
  databaseUrl: option({
    flag: "database-url",
    env: "DATABASE_URL",
    schema: pgUrlSchema.optional(),
    check: databaseUrlCheck("the embedded database"),
    defaultText: "embedded PGlite under --data-dir",
    doc: "PostgreSQL URL naming a host (or PGHOST set). Unset: embedded PostgreSQL (PGlite), " +
      "migrated on start. Or DATABASE_URL_FILE: a file holding it. libpq's sslmode, " +
      "sslrootcert, sslcert, sslkey, PGSSL* apply (docs/security.md).",
    secret: "url",
  }),
  dataDir: option({
    flag: "data-dir",
    env: "FEEDLINE_DATA_DIR",
    schema: z.string().min(1).default(".feedline"),
    defaultText: ".feedline",
    doc: "Where the embedded database keeps its files; one process at a time uses it (lock file).",
  }),
  embeddedDbPort: option({
    flag: "embedded-db-port",
    env: "FEEDLINE_EMBEDDED_DB_PORT",
    schema: zs.int(0, 65535).default(5433),
    defaultText: "5433",
    doc: "Port of the embedded PostgreSQL on 127.0.0.1 (a free one if taken).",
  }),
  dbPoolSize: option({
    flag: "db-pool-size",
    env: "FEEDLINE_DB_POOL_SIZE",
    schema: zs.int(1, 100).default(4),
    defaultText: "4",
    doc: "PostgreSQL connections to open at most.",
  }),
  dbPooler: option({
    flag: "db-pooler",
    env: "FEEDLINE_DB_POOLER",
    schema: z.enum(["none", "transaction"]).default("none"),
    defaultText: "none",
    doc: "`transaction`: DATABASE_URL is a pooler in transaction mode (PgBouncer): no named " +
      "prepared statements, no LISTEN through it (see --listen-database-url).",
  }),
};

/** How `feed_values` partitions are kept (src/db/partitions.ts, docs/scaling.md). */
export const partitionOptions = {
  partitionInterval: option({
    flag: "partition-interval",
    env: "FEEDLINE_PARTITION_INTERVAL",
    schema: z.enum(["day", "week", "month", "year"]).default("month"),
    defaultText: "month",
    doc: "Range of each new feed_values partition (UTC boundaries); new ones continue from " +
      "the end of the last.",
  }),
  partitionPremake: option({
    flag: "partition-premake",
    env: "FEEDLINE_PARTITION_PREMAKE",
    schema: zs.int(1, 1000).default(3),
    defaultText: "3",
    doc: "Partitions kept ready after the current one.",
  }),
  retention: option({
    flag: "retention",
    env: "FEEDLINE_RETENTION",
    schema: retentionSchema,
    defaultText: "off",
    doc: "Drop whole feed_values partitions older than this (e.g. 90d, 12w); never row by row. " +
      "Tiers: raw=30d,1h=2y,1d=forever also delete rollups by bucket (docs/operations.md#rollups).",
  }),
  partitionUpkeep: option({
    flag: "partition-upkeep",
    env: "FEEDLINE_PARTITION_UPKEEP",
    schema: zs.bool().default(true),
    defaultText: "on",
    doc: "Create partitions ahead and apply --retention; off when pg_partman keeps them.",
    boolean: true,
  }),
};

/** The partition settings of src/db/partitions.ts from the values of `partitionOptions`. */
export function partitionSettingsOf(values: {
  partitionInterval: "day" | "week" | "month" | "year";
  partitionPremake: number;
  retention: RetentionTiers;
  partitionUpkeep: boolean;
}) {
  return {
    interval: values.partitionInterval,
    premake: values.partitionPremake,
    retentionMs: values.retention.rawMs,
    rollupRetention: values.retention.rollups.map((r) => ({
      interval: r.width.interval,
      widthMs: r.width.ms,
      keepMs: r.keepMs,
    })),
    upkeep: values.partitionUpkeep,
  };
}

/** Topic templates and payload limits (docs/topics-and-payloads.md). */
export const decodeOptions = {
  mappings: option({
    flag: "mappings",
    env: "FEEDLINE_MAPPINGS",
    schema: z.string().min(1).optional(),
    defaultText: "none (the templates)",
    doc: "JSON file of rules that replace the topic templates, for devices that already " +
      "exist (deploy/mappings/); checked at start.",
  }),
  feedTopic: option({
    flag: "feed-topic",
    env: "FEEDLINE_FEED_TOPIC",
    schema: z.string().min(1).default(DEFAULT_TEMPLATES.feed),
    defaultText: DEFAULT_TEMPLATES.feed,
    doc: "Topic template of one feed value.",
  }),
  feedsTopic: option({
    flag: "feeds-topic",
    env: "FEEDLINE_FEEDS_TOPIC",
    schema: z.string().min(1).default(DEFAULT_TEMPLATES.feeds),
    defaultText: DEFAULT_TEMPLATES.feeds,
    doc: "Topic template of many feeds of one device in one JSON message.",
  }),
  statusTopic: option({
    flag: "status-topic",
    env: "FEEDLINE_STATUS_TOPIC",
    schema: z.string().min(1).default(DEFAULT_TEMPLATES.status),
    defaultText: DEFAULT_TEMPLATES.status,
    doc: "Topic template of device status (online/offline).",
  }),
  maxPayloadBytes: option({
    flag: "max-payload-bytes",
    env: "FEEDLINE_MAX_PAYLOAD_BYTES",
    schema: zs.int(1, 268_435_455).default(65536),
    defaultText: "65536",
    doc: "Larger payloads are rejected as too_large.",
  }),
  maxTextLength: option({
    flag: "max-text-length",
    env: "FEEDLINE_MAX_TEXT_LENGTH",
    schema: zs.int(1, 100_000).default(255),
    defaultText: "255",
    doc: "Longest text value (e.g. ON, open) accepted.",
  }),
  maxFutureSkewMs: option({
    flag: "max-future-skew-ms",
    env: "FEEDLINE_MAX_FUTURE_SKEW_MS",
    schema: zs.int(0).default(300_000),
    defaultText: "300000",
    doc: "Device timestamps further ahead of the receive time are rejected (future_timestamp).",
  }),
  maxTopicLength: option({
    flag: "max-topic-length",
    env: "FEEDLINE_MAX_TOPIC_LENGTH",
    schema: zs.int(16, 65535).default(DEFAULT_MAX_TOPIC_LENGTH),
    defaultText: String(DEFAULT_MAX_TOPIC_LENGTH),
    doc: "Longer topics are rejected as bad_topic before they are parsed.",
  }),
  maxJsonDepth: option({
    flag: "max-json-depth",
    env: "FEEDLINE_MAX_JSON_DEPTH",
    schema: zs.int(1, 100).default(DEFAULT_MAX_JSON_DEPTH),
    defaultText: String(DEFAULT_MAX_JSON_DEPTH),
    doc: "JSON payloads nested deeper are rejected as bad_payload.",
  }),
  maxBulkEntries: option({
    flag: "max-bulk-entries",
    env: "FEEDLINE_MAX_BULK_ENTRIES",
    schema: zs.int(1, 1_000_000).default(DEFAULT_MAX_BULK_ENTRIES),
    defaultText: String(DEFAULT_MAX_BULK_ENTRIES),
    doc: "Many-feeds messages with more entries are rejected as too_large.",
  }),
};

/**
 * What `decode()` needs, from the values of `decodeOptions`. The templates are compiled
 * here, at start, so a bad one stops the command with a line naming its flag.
 */
export function decodeOptionsFrom(values: {
  mappings?: string;
  feedTopic: string;
  feedsTopic: string;
  statusTopic: string;
  maxPayloadBytes: number;
  maxTextLength: number;
  maxFutureSkewMs: number;
  maxTopicLength: number;
  maxJsonDepth: number;
  maxBulkEntries: number;
}, sources?: Partial<Record<"feedTopic" | "feedsTopic" | "statusTopic", string>>): DecodeOptions {
  const mappings = values.mappings === undefined ? undefined : loadMappings(values.mappings);
  if (mappings && sources) {
    const given = (["feedTopic", "feedsTopic", "statusTopic"] as const).find((k) =>
      sources[k] !== undefined && sources[k] !== "default"
    );
    if (given) {
      const flag = decodeOptions[given].flag;
      throw new FeedlineError(
        "CONFIG_INVALID",
        `--mappings replaces the topic templates; drop --${flag} (or write its topic as a rule)`,
      );
    }
  }
  return {
    router: mappings?.router ?? compileTopics({
      feed: values.feedTopic,
      feeds: values.feedsTopic,
      status: values.statusTopic,
    }),
    ...(mappings ? { mappings } : {}),
    maxPayloadBytes: values.maxPayloadBytes,
    maxTextLength: values.maxTextLength,
    maxFutureSkewMs: values.maxFutureSkewMs,
    maxTopicLength: values.maxTopicLength,
    maxJsonDepth: values.maxJsonDepth,
    maxBulkEntries: values.maxBulkEntries,
  };
}

/** How batches are formed and written. */
export const processingOptions = {
  batchSize: option({
    flag: "batch-size",
    env: "FEEDLINE_BATCH_SIZE",
    schema: zs.int(1, 100_000).default(5000),
    defaultText: "5000",
    doc: "Most messages in one batch (one transaction); a full batch is written at once.",
  }),
  maxBatchBytes: option({
    flag: "max-batch-bytes",
    env: "FEEDLINE_MAX_BATCH_BYTES",
    schema: zs.int(1024, 2_147_483_647).default(8 * 1024 * 1024),
    defaultText: "8388608 (8 MiB)",
    doc: "Most bytes in one batch, counted as --queue-bytes counts them (a batch always takes " +
      "at least one message).",
  }),
  batchIntervalMs: option({
    flag: "batch-interval-ms",
    env: "FEEDLINE_BATCH_INTERVAL_MS",
    schema: zs.int(1, 3_600_000).default(10_000),
    defaultText: "10000",
    doc: "Longest a queued message waits before its batch is written.",
  }),
  autoRegister: option({
    flag: "auto-register",
    env: "FEEDLINE_AUTO_REGISTER",
    schema: zs.bool().optional(),
    defaultText: "on with the embedded database, off otherwise",
    doc: "Dev mode: create unknown users, devices and feeds instead of rejecting their messages.",
    boolean: true,
  }),
  acceptUnregisteredDevices: option({
    flag: "accept-unregistered-devices",
    env: "FEEDLINE_ACCEPT_UNREGISTERED_DEVICES",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Store readings of devices not registered under their user (the reference design's " +
      "behaviour); off: they are rejected as unknown_device, like their status messages.",
    boolean: true,
  }),
  feedCacheTtlMs: option({
    flag: "feed-cache-ttl-ms",
    env: "FEEDLINE_FEED_CACHE_TTL_MS",
    schema: zs.int(0).default(30_000),
    defaultText: "30000",
    doc:
      "How long a looked-up feed or device is trusted without a check of the lookup change counter (sql/017) confirming that nothing changed; checked every third of it (0: no cache).",
  }),
  feedCacheSize: option({
    flag: "feed-cache-size",
    env: "FEEDLINE_FEED_CACHE_SIZE",
    // 18 bytes a feed off the V8 heap, plus its share of the device, rules and tenant caches
    // (src/ingest/cache_sizes.ts); the memory budget counts it (docs/performance.md).
    // The same as DEFAULT_FEED_CACHE_SIZE (src/ingest/compact_cache.ts; memory_budget_test.ts).
    schema: zs.int(1).default(1_100_000),
    defaultText: "1100000",
    doc: "Most feeds kept in the lookup cache (about 27 bytes each, with a quarter as many " +
      "devices); set it above the number of feeds that publish within --feed-cache-ttl-ms.",
  }),
  rollups: rollupsOption,
  rejectsRetentionHours: option({
    flag: "rejects-retention-hours",
    env: "FEEDLINE_REJECTS_RETENTION_HOURS",
    schema: zs.int(0).default(168),
    defaultText: "168 (7 days)",
    doc: "serve deletes rejects older than this (0: keep forever).",
  }),
  rejectsMaxRows: option({
    flag: "rejects-max-rows",
    env: "FEEDLINE_REJECTS_MAX_ROWS",
    schema: zs.int(0).default(1_000_000),
    defaultText: "1000000",
    doc: "serve keeps at most this many rejects, newest first (0: no limit).",
  }),
  rejectPayloadCap: option({
    flag: "reject-payload-cap",
    env: "FEEDLINE_REJECT_PAYLOAD_CAP",
    schema: zs.int(0, 1_048_576).default(1024),
    defaultText: "1024",
    doc: "Bytes of a rejected payload kept in ingest_rejects (its full size is recorded).",
  }),
};

/**
 * Is `--verbose` (or FEEDLINE_VERBOSE) set? `main.ts` needs it before, and even when, a
 * command's own parsing fails; the same schema as the option decides what counts as on.
 */
export function verboseFrom(args: string[], env: Record<string, string | undefined>): boolean {
  if (args.includes("--verbose")) return true;
  const parsed = logOptions.verbose.schema.safeParse(env.FEEDLINE_VERBOSE);
  return parsed.success && parsed.data === true;
}

/** Logging and diagnostics. */
export const logOptions = {
  logLevel: option({
    flag: "log-level",
    env: "FEEDLINE_LOG_LEVEL",
    schema: z.enum(["debug", "info", "warn", "error"]).default("info"),
    defaultText: "info",
    doc: "debug, info, warn or error.",
  }),
  logFormat: option({
    flag: "log-format",
    env: "FEEDLINE_LOG_FORMAT",
    schema: z.enum(["auto", "json", "text"]).default("auto"),
    defaultText: "auto",
    doc: "auto: readable lines on a terminal, JSON lines otherwise.",
  }),
  verbose: option({
    flag: "verbose",
    env: "FEEDLINE_VERBOSE",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "On errors, print the cause chain and stack.",
    boolean: true,
  }),
};

/**
 * Reads and compiles a mappings file (src/core/mappings/), so a wrong one stops the
 * command at start with one line naming the file, rule and field.
 */
export function loadMappings(path: string) {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `--mappings ${path}: cannot read it (${(error as Error).message.split("\n")[0]})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `--mappings ${path} is not JSON: ${(error as Error).message.slice(0, 120)}`,
    );
  }
  return compileMappings(json, path);
}
