/**
 * Session loss is visible (issue 20): a broker that comes back without serve's session
 * (no persistence) has lost whatever it held for serve and whatever was published before
 * serve subscribed again. serve cannot get that back, but it must say so: one warning,
 * and `feedline_sessions_lost_total`.
 */
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { accountingTerms } from "../src/ingest/accounting.ts";
import { startMosquitto } from "./support/broker.ts";
import { startServeFixture } from "./support/fixture.ts";
import { type HeldLock, lockFeedValues } from "./support/lock.ts";
import { type LogLine, recordingLogger } from "./support/logs.ts";
import { parsePrometheusText } from "./support/prometheus.ts";
import { endClient, HAVE_MOSQUITTO, publish, waitFor } from "./support/serve.ts";

Deno.test({
  name: "a broker restarted without its state: one warning, sessions_lost counted, held " +
    "messages written, subscribed again",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    const mosquitto = await startMosquitto(); // no persistence
    const logs: LogLine[] = [];
    const f = await startServeFixture({
      broker: { url: mosquitto.url, protocolVersion: 5 },
      args: ["--batch-interval-ms", "20"],
      log: recordingLogger(logs),
    });
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    let pub: mqtt.MqttClient | null = null;
    let lock: HeldLock | null = null;
    try {
      // serve holds these, unwritten, when the broker goes.
      lock = await lockFeedValues(f.db);
      const n = 50;
      for (let v = 0; v < n; v++) await publish(f.pub, topic, String(v), { qos: 1 });
      await waitFor("serve to hold them", () => f.serve.metrics.received.total() === n);

      await mosquitto.restart();
      const connects = () => logs.filter((l) => l.msg === "connected to broker");
      await waitFor("serve to reconnect", () => connects().length === 2);
      assert.equal(connects()[1].sessionPresent, false);
      await lock.release();

      pub = mqtt.connect(mosquitto.url, { protocolVersion: 5, reconnectPeriod: 0 });
      await new Promise<void>((resolve) => pub!.once("connect", () => resolve()));
      await waitFor("serve to subscribe again", () => f.serve.source.subscribed);
      await publish(pub, topic, String(n), { qos: 1 });
      const distinct = async () =>
        (await f.db.sql`select count(distinct value)::int as n from feed_values`)[0].n;
      await waitFor("the held messages and the sentinel", async () => (await distinct()) === n + 1);
      assert.equal(await f.storedCount(), n + 1, "each written once");

      const warnings = logs.filter((l) => l.level === "warn" && /no session/.test(l.msg));
      assert.equal(warnings.length, 1, JSON.stringify(logs.filter((l) => l.level !== "info")));
      assert.ok(Number(warnings[0].awayMs) >= 0 && warnings[0].heldMessages === n);
      const metrics = parsePrometheusText(f.serve.metrics.registry.render());
      assert.equal(metrics.value("feedline_sessions_lost_total"), 1);
      const a = accountingTerms(
        f.serve.metrics,
        f.serve.pipeline.queued,
        f.serve.pipeline.inFlight,
      );
      assert.ok(a.balanced, JSON.stringify(a));
    } finally {
      await lock?.release();
      if (pub) await endClient(pub, true);
      await f.close();
      await mosquitto.close();
    }
  },
});
