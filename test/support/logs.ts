/**
 * A logger that keeps what serve logs, for tests that assert on a warning or count lines.
 *
 * @module
 */
import type { Logger, LogLevel } from "../../src/log.ts";

/** One recorded line: its level, message and fields. */
export type LogLine = { level: LogLevel; msg: string } & Record<string, unknown>;

/** A logger that appends every line (debug included) to `lines`. */
export function recordingLogger(lines: LogLine[]): Logger {
  const at = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push({ ...fields, level, msg });
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
