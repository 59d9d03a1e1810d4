/**
 * Where serve's HTTP server listens when the address is busy. In the embedded default
 * (no `--http` and no `HTTP_ADDR` given) a taken port is not the user's doing: like the
 * embedded broker and database, the server moves to a free port, and serve logs which.
 * An address the user gave is not moved: the start fails with one line naming the
 * address and where it came from.
 */
import { FeedlineError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type HttpOptions, startHttpServer } from "./http.ts";

/** How the address was chosen. */
export interface HttpAddressChoice {
  /** Where the address came from: `--http`, `HTTP_ADDR`, or null for the default. */
  givenBy: "--http" | "HTTP_ADDR" | null;
  /** Move to a free port when the default's port is taken. */
  fallBack: boolean;
}

/** A started HTTP server; `fellBack` when the requested port was taken. */
export interface ListeningHttp {
  port: number;
  fellBack: boolean;
  close(): Promise<void>;
}

/** Starts the HTTP server, falling back or failing as `choice` says. */
export function listenHttp(opts: HttpOptions, choice: HttpAddressChoice): ListeningHttp {
  try {
    return { ...startHttpServer(opts), fellBack: false };
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse) || opts.port === 0) throw error;
    if (choice.givenBy === null && choice.fallBack) {
      return { ...startHttpServer({ ...opts, port: 0 }), fellBack: true };
    }
    const address = `${opts.hostname}:${opts.port}`;
    const hint = choice.givenBy === null
      ? `(the default); pick a free one with --http HOST:PORT (or HTTP_ADDR), or --http off`
      : `(from ${choice.givenBy}); pick a free one, or --http off`;
    throw new FeedlineError(
      "ADDRESS_IN_USE",
      `cannot listen on ${address}: the address is already in use ${hint}`,
      { cause: error },
    );
  }
}

/** Starts the operations endpoint for `serve` and logs where it is (and a moved port). */
export function startOpsHttp(
  opts: HttpOptions,
  choice: HttpAddressChoice,
  log: Logger,
): ListeningHttp {
  const http = listenHttp(opts, choice);
  const base = `http://${opts.hostname}:${http.port}/`;
  if (http.fellBack) {
    log.warn(`port ${opts.port} is taken; the status page and /metrics use another`, { url: base });
  }
  log.info("http listening", { status: base, metrics: `${base}metrics` });
  return http;
}
