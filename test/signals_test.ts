/**
 * One Ctrl-C is one stop request. `deno task serve` forwards the signals it gets to its
 * child, so a signal to the whole process group (what a terminal's Ctrl-C does) reaches
 * serve twice; serve must still drain, log "stopped" and exit 0.
 */
import assert from "node:assert/strict";
import { verifyEmbeddedBooks } from "./support/audit.ts";
import { collectJsonLines, connectClient, endClient, publish, waitFor } from "./support/serve.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function processGroupOf(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // pid (comm) state ppid pgrp ...: comm may hold spaces, so count after its ")".
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
}

for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`deno task serve: ${sig} to the process group drains, logs "stopped", exits 0`, async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "feedline-signals-" });
    const child = new Deno.Command("setsid", {
      args: [
        Deno.execPath(),
        "task",
        "serve",
        "--data-dir",
        dataDir,
        "--embedded-mqtt-port",
        "0",
        "--embedded-db-port",
        "0",
        "--http",
        "127.0.0.1:0",
        "--log-format",
        "json",
        // Nothing is written before the signal: the drain has work to do.
        "--batch-interval-ms",
        "600000",
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1", MQTT_URL: "", DATABASE_URL: "", HTTP_ADDR: "" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const logs: Record<string, unknown>[] = [];
    const reading = collectJsonLines(child.stdout, logs);
    const stderr = new Response(child.stderr).text();
    let pgid: number | null = null;
    try {
      await waitFor("serve to subscribe", () => logs.some((l) => l.msg === "subscribed"), 90_000);
      pgid = await processGroupOf(child.pid);
      const broker = logs.find((l) => l.msg === "embedded MQTT broker (MQTT 3.1.1) listening")!;
      const client = await connectClient(String(broker.url), 4);
      const user = crypto.randomUUID();
      for (let i = 0; i < 5; i++) {
        await publish(client, `${user}/dev1/feeds/temperature`, String(20 + i), { qos: 0 });
      }
      await endClient(client);
      // QoS 0 is fire-and-forget: wait until serve has taken the messages in.
      const http = logs.find((l) => l.msg === "http listening")!;
      await waitFor("serve to receive the 5 messages", async () => {
        const metrics = await (await fetch(String(http.metrics))).text();
        return /^feedline_messages_received_total 5$/m.test(metrics);
      });

      Deno.kill(-pgid, sig);
      const status = await child.status;
      await reading;
      const err = await stderr;
      assert.equal(status.code, 0, `exit code (stderr: ${err})`);
      const stopped = logs.find((l) => l.msg === "stopped");
      assert.ok(stopped, `no "stopped" line; last lines: ${JSON.stringify(logs.slice(-3))}`);
      assert.equal(stopped.readingsStored, 5);
      assert.equal(stopped.unwritten, 0);
      assert.ok(!logs.some((l) => String(l.msg).startsWith("second signal")));
      // Its books against its embedded database (test/support/audit.ts).
      await verifyEmbeddedBooks(dataDir, [{ stopped }]);
    } finally {
      try {
        if (pgid !== null) Deno.kill(-pgid, "SIGKILL");
      } catch { /* already gone */ }
      await child.status;
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}
