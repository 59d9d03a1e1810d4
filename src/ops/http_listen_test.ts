import assert from "node:assert/strict";
import { FeedlineError } from "../errors.ts";
import { listenHttp, startOpsHttp } from "./http_listen.ts";
import { silentLogger } from "../log.ts";
import { httpAddressChoice } from "../embedded/remembered_ports.ts";

function opts(port: number) {
  return {
    hostname: "127.0.0.1",
    port,
    metrics: () => "",
    readiness: () => ({ broker: true, database: true }),
    log: silentLogger,
  };
}

Deno.test("listenHttp: a taken default port moves to a free one", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  try {
    const http = listenHttp(opts(port), { givenBy: null, fallBack: true });
    try {
      assert.equal(http.fellBack, true);
      assert.notEqual(http.port, port);
      const res = await fetch(`http://127.0.0.1:${http.port}/healthz`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    } finally {
      await http.close();
    }
  } finally {
    busy.close();
  }
});

Deno.test("listenHttp: a taken address the user gave fails with one line naming it", () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  try {
    for (const givenBy of ["--http", "HTTP_ADDR"] as const) {
      assert.throws(
        () => listenHttp(opts(port), { givenBy, fallBack: true }),
        (error: unknown) => {
          assert.ok(error instanceof FeedlineError);
          assert.equal(error.code, "ADDRESS_IN_USE");
          assert.equal(
            error.message,
            `cannot listen on 127.0.0.1:${port}: the address is already in use (from ${givenBy}); ` +
              "pick a free one, or --http off",
          );
          return true;
        },
      );
    }
    // Outside the embedded default, a taken default port is not moved either.
    assert.throws(
      () => listenHttp(opts(port), { givenBy: null, fallBack: false }),
      /already in use \(the default\); pick a free one with --http HOST:PORT/,
    );
  } finally {
    busy.close();
  }
});

Deno.test("startOpsHttp: bound before serve runs, /readyz is 503 until wired", async () => {
  const http = startOpsHttp(
    { hostname: "127.0.0.1", port: 0, metrics: () => "m 1\n", log: silentLogger },
    { givenBy: null, fallBack: false },
    silentLogger,
  );
  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${http.port}${path}`);
    return { status: res.status, body: await res.text() };
  };
  try {
    assert.equal((await get("/readyz")).status, 503);
    assert.equal((await get("/metrics")).body, "m 1\n");
    http.wire({
      readiness: () => ({ broker: true, database: true }),
      routes: { "/api/live": () => Response.json({ live: true }) },
    });
    assert.equal((await get("/readyz")).status, 200);
    assert.deepEqual(JSON.parse((await get("/api/live")).body), { live: true });
  } finally {
    await http.close();
  }
});

Deno.test("listenHttp: a moved port is remembered in the data dir and taken again next time", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-http-port-" });
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  try {
    const choice = httpAddressChoice({
      httpGivenBy: null,
      embeddedBroker: true,
      dataDir,
    });
    const first = listenHttp(opts(port), choice);
    await first.close();
    const second = listenHttp(opts(port), choice);
    await second.close();
    assert.equal(second.port, first.port, "the same fallback port as at the last start");
    assert.equal(second.kept, true);
    const ports = JSON.parse(await Deno.readTextFile(`${dataDir}/ports.json`));
    assert.equal(ports.http, first.port);
  } finally {
    busy.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
