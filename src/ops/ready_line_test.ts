import assert from "node:assert/strict";
import { type Logger, silentLogger } from "../log.ts";
import { readyFields, readyOnce } from "./ready_line.ts";

Deno.test("readyFields(): a publish command for the embedded broker only, a reachable page URL", () => {
  const embedded = readyFields({
    mqttUrl: "mqtt://127.0.0.1:41883",
    embeddedBroker: true,
    feedTopic: "site/{user_id}/{device_code}/feeds/{feed_key}",
    autoRegister: true,
    http: { hostname: "0.0.0.0", port: 8081 },
    database: "embedded PostgreSQL",
  });
  assert.equal(
    embedded.publish,
    "mosquitto_pub -h 127.0.0.1 -p 41883 -t " +
      "site/6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f/dev1/feeds/temperature -m 21.5",
  );
  assert.equal(embedded.status_page, "http://127.0.0.1:8081/");
  const real = readyFields({
    mqttUrl: "mqtts://feedline:s3cret@broker.example:8883",
    embeddedBroker: false,
    feedTopic: "{user_id}/{device_code}/feeds/{feed_key}",
    autoRegister: false,
    http: null,
    database: "postgres://feedline:***@db/iot",
  });
  assert.equal(real.publish, undefined);
  assert.equal(real.status_page, undefined);
  assert.doesNotMatch(String(real.broker), /s3cret/);
});

Deno.test("readyOnce(): one ready line, once subscribed and started, in either order", () => {
  const said: string[] = [];
  const log: Logger = { ...silentLogger, info: (msg) => said.push(msg) };
  const config = {
    embeddedBroker: true,
    autoRegister: true,
    feedTopic: "{user_id}/{device_code}/feeds/{feed_key}",
    http: "127.0.0.1:8080",
  };
  const ready = readyOnce(
    log,
    config,
    () => ({ mqttUrl: "mqtt://127.0.0.1:1883", httpPort: 8080, database: "x" }),
  );
  ready.subscribed();
  assert.deepEqual(said, []);
  ready.started();
  ready.subscribed(); // a reconnect subscribes again: still one line
  assert.deepEqual(said, ["ready"]);
});
