/**
 * The operations endpoint: one port with `/metrics` (Prometheus text format 0.0.4),
 * `/healthz` (the process is alive) and `/readyz` (broker subscribed, database
 * reachable, writer not stalled; 503 with a JSON body naming what is not). Extra routes plug in by path.
 */
import type { Logger } from "../log.ts";

/** What `/readyz` reports. */
export interface Readiness {
  broker: boolean;
  database: boolean;
  /** The batch writer: stalled when a batch is uncommitted past `--stall-warn-ms`. */
  writer?: { stalled: boolean; batch_age_ms: number };
  /**
   * The queues: `holding_back` while one is full (by messages or bytes) and serve has
   * stopped reading the broker's socket. Not a reason for 503 (docs/operations.md).
   */
  queue?: QueueReadiness;
}

/** The queue part of `/readyz`. */
export interface QueueReadiness {
  holding_back: boolean;
  /** The full queue and its bound, or null while both have room. */
  full: { queue: "data" | "status"; by: "messages" | "bytes" } | null;
  messages: number;
  bytes: number;
  max_bytes: number;
  in_flight_bytes: number;
}

/** A route handler. */
export type RouteHandler = (req: Request) => Response | Promise<Response>;

/** Options of the HTTP server. */
export interface HttpOptions {
  hostname: string;
  port: number;
  metrics: () => string;
  readiness: () => Readiness;
  routes?: Record<string, RouteHandler>;
  log: Logger;
}

/** Starts the server; resolves with its address and a shutdown function. */
export function startHttpServer(opts: HttpOptions): { port: number; close(): Promise<void> } {
  const server = Deno.serve({
    hostname: opts.hostname,
    port: opts.port,
    onListen: () => {},
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/metrics") {
      return new Response(opts.metrics(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    if (path === "/healthz") return Response.json({ status: "ok" });
    if (path === "/readyz") {
      const r = opts.readiness();
      const ready = r.broker && r.database && !r.writer?.stalled;
      return Response.json({ status: ready ? "ready" : "not ready", ...r }, {
        status: ready ? 200 : 503,
      });
    }
    const route = opts.routes?.[path];
    if (route) {
      try {
        return await route(req);
      } catch (error) {
        opts.log.error("http handler failed", { path, error: (error as Error).message });
        return new Response("internal error\n", { status: 500 });
      }
    }
    return new Response("not found\n", { status: 404 });
  });
  return {
    port: server.addr.port,
    close: () => server.shutdown(),
  };
}
