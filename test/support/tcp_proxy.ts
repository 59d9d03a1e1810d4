/**
 * A TCP proxy on loopback that a test can cut and restore: the network between serve and
 * its database or broker going away, without stopping a server other tests share.
 *
 * @module
 */

/** A running proxy. */
export interface TcpProxy {
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /** Closes every open connection and stops listening: new connections are refused. */
  cut(): void;
  /** Accepts and forwards connections again. */
  restore(): void;
  /**
   * Sockets open through the proxy, two per connection. 0 once a client closed its
   * connection: every byte it wrote has been passed on and the target's side closed too.
   */
  openSockets(): number;
  close(): Promise<void>;
}

/**
 * Forwards connections on a free loopback port to `target`.
 *
 * @example
 * ```ts
 * const proxy = await startTcpProxy({ hostname: "127.0.0.1", port: 5432 });
 * proxy.cut(); // the database is "gone"
 * proxy.restore();
 * await proxy.close();
 * ```
 */
export function startTcpProxy(target: { hostname: string; port: number }): Promise<TcpProxy> {
  let listener: Deno.Listener | null = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();

  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed by the other side.
    }
  };

  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } catch {
      // A cut or a reset ends the pump.
    }
    closeQuietly(from);
    closeQuietly(to);
  };

  const track = (p: Promise<void>) => {
    tasks.add(p);
    p.finally(() => tasks.delete(p));
  };

  const serve = (l: Deno.Listener) =>
    track((async () => {
      try {
        for await (const client of l) {
          open.add(client);
          track((async () => {
            let server: Deno.Conn;
            try {
              server = await Deno.connect(target);
            } catch {
              closeQuietly(client);
              return;
            }
            open.add(server);
            await Promise.all([pipe(client, server), pipe(server, client)]);
          })());
        }
      } catch {
        // The listener was closed by cut() or close().
      }
    })());

  const stopListening = () => {
    listener?.close();
    listener = null;
    for (const conn of [...open]) closeQuietly(conn);
  };

  serve(listener);
  return Promise.resolve({
    port,
    cut: stopListening,
    openSockets: () => open.size,
    restore() {
      if (listener) return;
      // The port was ours a moment ago; Deno sets SO_REUSEADDR, so it can be taken again.
      listener = Deno.listen({ hostname: "127.0.0.1", port });
      serve(listener);
    },
    async close() {
      stopListening();
      while (tasks.size > 0) await Promise.all([...tasks]);
    },
  });
}

/**
 * `url` with a proxy in front of its host: the proxy is started, passed to `started` (the
 * test keeps it to cut the connection later), and the URL to reach it returned.
 */
export async function proxiedUrl(url: string, started: (proxy: TcpProxy) => void): Promise<string> {
  const target = new URL(url);
  const proxy = await startTcpProxy({ hostname: target.hostname, port: Number(target.port) });
  started(proxy);
  target.hostname = "127.0.0.1";
  target.port = String(proxy.port);
  return target.href;
}
