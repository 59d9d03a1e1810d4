/**
 * The few error classes feedline throws. Each carries a stable `code` that tests assert
 * on and a message a person can act on; `main.ts` prints the message (and, with
 * `--verbose`, the cause chain). And errors put into words: any error as one bounded
 * line (a reject's detail), and why a file of the operator's could not be read.
 */

/** Stable error codes. */
export type ErrorCode =
  | "CONFIG_INVALID"
  | "USAGE"
  | "MIGRATION_CHANGED"
  | "MIGRATION_FAILED"
  | "DATABASE_UNREACHABLE"
  | "BROKER_UNREACHABLE"
  | "EMBEDDED_FAILED"
  | "ADDRESS_IN_USE"
  | "DATA_DIR_LOCKED"
  | "BAD_INPUT"
  | "NO_FREE_LANE"
  | "SCHEMA_NOT_READY";

/** An error meant for the person running feedline. */
export class FeedlineError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FeedlineError";
    this.code = code;
  }
}

/** Collects `message` along the `cause` chain, for `--verbose` and logs. */
export function describeCauses(error: unknown): string[] {
  const lines: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current && depth < 10; depth++) {
    if (current instanceof Error) {
      lines.push(`${current.name}: ${current.message}`);
      current = current.cause;
    } else {
      lines.push(String(current));
      break;
    }
  }
  return lines;
}

/** An error as one bounded line, for a reject's detail. Never throws. */
export function describeError(error: unknown): string {
  let text: string;
  try {
    text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch {
    text = "unprintable error";
  }
  return text.slice(0, 500);
}

/**
 * Why `Deno.readTextFile` failed on one of the operator's files (certificates, keys,
 * secrets): "no such file", "permission denied", ...
 */
export function describeReadError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a folder";
  return error instanceof Error ? error.message : String(error);
}
