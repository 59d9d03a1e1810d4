/**
 * `feedline trace`: one line per message of a window (stored, rejected, skipped, a
 * duplicate absorbed, dropped), then totals that add up to what was received. Reads the
 * database (`DATABASE_URL`, else the embedded one of a running serve, else the local
 * embedded one) and serve's capture file when given. See docs/operations.md, "A device
 * says it sent data".
 */
import { parseTraceArgs, type TraceConfig, traceOptions } from "../src/cli/trace_options.ts";
import { formatOptionsHelp } from "../src/cli/options.ts";
import { openCommandDatabase } from "../src/db/command_database.ts";
import { formatMicros } from "../src/capture/format.ts";
import {
  checkCapture,
  formatDeviceStats,
  formatTraceLine,
  formatTraceTotals,
  trace,
  traceLineJson,
  type TraceReport,
} from "../src/replay/trace.ts";

export { parseTraceArgs, type TraceConfig, traceOptions };

/** Help text of `trace`. */
export const help = `feedline trace — what became of each message a device sent

Usage: feedline trace [--topic FILTER] [--device CODE] [--feed KEY] [--since 10m] [options]

Prints one line per message received in the window: stored (which feed, which time),
rejected (reason and detail), skipped (why), a duplicate absorbed by a reading already
stored, or dropped; then the totals, which add up to the messages received. With
--capture (serve's capture file) every received message is traced; without it, only
what the database keeps (readings, rejects, status events). See docs/operations.md.

Options (flag, [environment variable], default):
${formatOptionsHelp(traceOptions)}
`;

const encoder = new TextEncoder();

/** Runs a trace and prints it through `out`; returns the report. */
export async function runTrace(
  config: TraceConfig,
  out: (text: string) => void = (t) => Deno.stdout.writeSync(encoder.encode(t)),
): Promise<TraceReport> {
  if (config.capture) await checkCapture(config.capture);
  const db = await openCommandDatabase(config, {
    poolSize: 1,
    migrate: config.migrate,
    command: "feedline trace",
  });
  let report: TraceReport;
  try {
    report = await trace({
      sql: db.sql,
      decode: config.decode,
      sinceUs: config.sinceUs,
      untilUs: config.untilUs,
      topicMatches: config.topicMatches,
      device: config.device ?? null,
      feed: config.feed ?? null,
      capture: config.capture ?? null,
      feedTopic: config.feedTopic,
      statusTopic: config.statusTopic,
    });
  } finally {
    await db.close();
  }
  const { lines } = report;
  const shown = config.limit > 0 && lines.length > config.limit
    ? lines.slice(lines.length - config.limit)
    : lines;
  const text: string[] = [];
  if (config.json) {
    for (const l of shown) text.push(JSON.stringify(traceLineJson(l)));
    text.push(JSON.stringify({
      totals: report.totals,
      devices: report.devices.map((d) => ({
        ...d,
        lastSeenUs: undefined,
        last_seen: formatMicros(d.lastSeenUs),
        lastReject: undefined,
        last_reject: d.lastReject &&
          { ...d.lastReject, atUs: undefined, at: formatMicros(d.lastReject.atUs) },
      })),
      source: report.source,
      shown: shown.length,
      notes: report.notes,
    }));
  } else {
    if (shown.length < lines.length) {
      text.push(`(${lines.length - shown.length} older messages not shown; see --limit)`);
    }
    for (const l of shown) text.push(formatTraceLine(l));
    text.push(formatTraceTotals(report.totals));
    for (const d of report.devices) text.push(formatDeviceStats(d));
    for (const note of report.notes) text.push(`note: ${note}`);
  }
  out(text.join("\n") + "\n");
  return report;
}

/** Runs `trace`. */
export async function run(args: string[]): Promise<void> {
  await runTrace(parseTraceArgs(args, Deno.env.toObject()));
}
