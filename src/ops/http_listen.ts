/**
 * Where serve's HTTP server listens when the address is busy. In the embedded default
 * (no `--http` and no `HTTP_ADDR` given) a taken port is not the user's doing: like the
 * embedded broker and database, the server moves to a free port, and serve logs which.
 * An address the user gave is not moved: the start fails with one line naming the
 * address and where it came from.
 */
import { FeedlineError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type HttpOptions, type Readiness, type RouteHandler, startHttpServer } from "./http.ts";

/** How the address was chosen. */
export interface HttpAddressChoice {
  /** Where the address came from: `--http`, `HTTP_ADDR`, or null for the default. */
  givenBy: "--http" | "HTTP_ADDR" | null;
  /** Move to a free port when the default's port is taken. */
  fallBack: boolean;
  /**
   * Where a port moved to is kept (the data dir's ports.json, src/embedded/remembered_ports.ts)
   * and tried first at the next start, so the status page keeps its address across restarts.
   */
  remember?: { get(): number | null; set(port: number): unknown };
}

/** A started HTTP server; `fellBack` when the requested port was taken. */
export interface ListeningHttp {
  port: number;
  fellBack: boolean;
  /** With `fellBack`: the same port as at the last start of the data dir. */
  kept?: boolean;
  close(): Promise<void>;
}

/** Starts the HTTP server, falling back or failing as `choice` says. */
export function listenHttp(opts: HttpOptions, choice: HttpAddressChoice): ListeningHttp {
  try {
    return { ...startHttpServer(opts), fellBack: false };
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse) || opts.port === 0) throw error;
    if (choice.givenBy === null && choice.fallBack) return moved(opts, choice.remember);
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

/** Listens on the port remembered if it is free, else on a free one, then remembered. */
function moved(opts: HttpOptions, remember: HttpAddressChoice["remember"]): ListeningHttp {
  const last = remember?.get() ?? null;
  if (last !== null && last !== opts.port) {
    try {
      return { ...startHttpServer({ ...opts, port: last }), fellBack: true, kept: true };
    } catch { /* taken too: a new one */ }
  }
  const http = startHttpServer({ ...opts, port: 0 });
  remember?.set(http.port);
  return { ...http, fellBack: true };
}

/** What serve's operations side answers on the endpoint (src/ops/operations.ts). */
export interface OpsHandlers {
  readiness: () => Readiness;
  routes: Record<string, RouteHandler>;
}

/** serve's operations endpoint: bound first, handed its handlers once serve runs. */
export interface OpsHttp extends ListeningHttp {
  /** From now on `/readyz` and the status page's routes answer from `handlers`. */
  wire(handlers: OpsHandlers): void;
}

/**
 * Binds serve's operations endpoint and logs where it is (and a moved port). serve binds
 * it before it opens anything else, so a taken address refuses the start before serve
 * has subscribed or written (docs/operations.md, "Starting"). Until `wire`, `/readyz`
 * answers 503 (nothing is ready yet), `/metrics` and `/healthz` answer, other paths 404.
 */
export function startOpsHttp(
  opts: { hostname: string; port: number; metrics: () => string; log: Logger },
  choice: HttpAddressChoice,
  log: Logger,
): OpsHttp {
  let handlers: OpsHandlers | null = null;
  // Looked up per request (src/ops/http.ts), so routes added by `wire` are served at once.
  const routes: Record<string, RouteHandler> = {};
  const http = listenHttp({
    ...opts,
    readiness: () => handlers?.readiness() ?? { broker: false, database: false },
    routes,
  }, choice);
  const base = `http://${opts.hostname}:${http.port}/`;
  if (http.fellBack) {
    log.warn(`port ${opts.port} is taken; the status page and /metrics use another`, {
      url: base,
      ...(http.kept ? { remembered: "the same port as at the last start of this data dir" } : {}),
    });
  }
  log.info("http listening", { status: base, metrics: `${base}metrics` });
  return {
    ...http,
    wire(next) {
      handlers = next;
      Object.assign(routes, next.routes);
    },
  };
}
