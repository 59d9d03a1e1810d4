/**
 * The process-level last guard of `serve`: an exception nobody caught (in a timer, an
 * event handler, a library callback) or a promise rejection nobody handled is logged and
 * counted instead of ending the process.
 *
 * Why not let it die and be restarted? Everything on the message path already catches
 * its own failures (src/mqtt/source.ts, src/ingest/pipeline.ts), so what arrives here is a bug
 * off that path, and dying for it costs more than it saves: QoS 0 messages queued in
 * memory are lost, and with QoS 1 a failure that some message triggers would come back
 * with that message after the restart, a crash loop that stops ingest for everyone. A
 * process that survives a bug but can no longer write shows it: the counter, the log
 * line, and a stalled writer on `/readyz`.
 */
import type { Logger } from "./log.ts";
import type { Counter } from "./prometheus.ts";

/**
 * Installs the listeners; returns a function that removes them.
 *
 * @example
 * ```ts
 * const remove = installProcessGuard(log, counter);
 * // ... serve runs ...
 * remove();
 * ```
 */
export function installProcessGuard(log: Logger, counter: Counter): () => void {
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    counter.inc({ kind: "unhandled_rejection" });
    log.error("unhandled promise rejection (kept running)", { error: describe(event.reason) });
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    counter.inc({ kind: "uncaught_exception" });
    log.error("uncaught exception (kept running)", { error: describe(event.error) });
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return () => {
    globalThis.removeEventListener("unhandledrejection", onRejection);
    globalThis.removeEventListener("error", onError);
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) return (error.stack ?? error.message).slice(0, 2000);
  return String(error).slice(0, 2000);
}
