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
  /** Closes every open connection and refuses new ones (they are closed at once). */
  cut(): void;
  /** Accepts and forwards connections again. */
  restore(): void;
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
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pumps = new Set<Promise<void>>();
  let up = true;

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
    pumps.add(p);
    p.finally(() => pumps.delete(p));
  };

  const accepting = (async () => {
    for await (const client of listener) {
      if (!up) {
        client.close();
        continue;
      }
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
  })().catch(() => {});

  return Promise.resolve({
    port: (listener.addr as Deno.NetAddr).port,
    cut() {
      up = false;
      for (const conn of [...open]) closeQuietly(conn);
    },
    restore() {
      up = true;
    },
    async close() {
      up = false;
      listener.close();
      for (const conn of [...open]) closeQuietly(conn);
      await accepting;
      await Promise.all([...pumps]);
    },
  });
}
