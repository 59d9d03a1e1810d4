/**
 * TLS to the broker (docs/security.md#tls-to-the-broker), end to end against private
 * Mosquitto TLS listeners (mqtts:// and wss://) that require a client certificate,
 * with certificates made here by openssl (test/support/tls.ts): serve, `replay
 * --publish` and `simulate` with --mqtt-ca-file / --mqtt-cert-file / --mqtt-key-file,
 * the one line each mistake gives, and the --mqtt-insecure opt-out.
 */
import assert from "node:assert/strict";
import mqtt, { type MqttClient } from "mqtt";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { parseSimulateArgs, simulateOptions } from "../src/cli/simulate_options.ts";
import { encodeCaptureLine } from "../src/capture/format.ts";
import { createLogger } from "../src/log.ts";
import { INSECURE_WARNING, resolveMqttTls } from "../src/mqtt/tls.ts";
import { FeedlineError } from "../src/errors.ts";
import { freePort, type Mosquitto, startMosquitto } from "./support/broker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import {
  endClient,
  HAVE_MOSQUITTO,
  runFeedline,
  startTestServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";
import { HAVE_OPENSSL, makeTestPki, type TestPki } from "./support/tls.ts";

const ignore = !HAVE_MOSQUITTO || !HAVE_OPENSSL;
if (ignore) console.warn("mqtt_tls_test skipped: needs /usr/sbin/mosquitto and openssl");

/** `feedline ARGS` as a process: exit code and stderr. */
const feedline = (args: string[]) => runFeedline(args, { MQTT_URL: "", DATABASE_URL: "" });

/** serve exits 1 with exactly one line on stderr, matching `pattern`, and no stack. */
async function assertServeFails(args: string[], pattern: RegExp) {
  const r = await feedline(["serve", "--http", "off", "--log-level", "error", ...args]);
  assert.equal(r.code, 1, `exit code; stderr:\n${r.stderr}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, "no stack trace");
}

/** Listener lines of a TLS listener (they apply to the `listener` line above them). */
function tlsLines(cafile: string, cert: string, key: string, requireCert: boolean): string {
  return [
    `cafile ${cafile}`,
    `certfile ${cert}`,
    `keyfile ${key}`,
    `require_certificate ${requireCert}`,
    `use_identity_as_username ${requireCert}`,
  ].join("\n");
}

function connected(url: string, options: mqtt.IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, protocolVersion: 5, ...options });
  return new Promise((resolve, reject) => {
    client.once("connect", () => resolve(client));
    client.once("error", (error) => {
      client.end(true);
      reject(error);
    });
  });
}

Deno.test({
  name: "MQTT TLS: private CA and client certificates over mqtts:// and wss://",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    let pki: TestPki | null = null;
    const brokers: Mosquitto[] = [];
    let db: TestDatabase | null = null;
    try {
      pki = await makeTestPki();
      const { caCert, otherCaCert, serverCert, serverKey } = pki;
      const [cert, key] = await pki.client("feedline");
      const [pubCert, pubKey] = await pki.client("publisher");
      const pubTls = {
        ca: await Deno.readTextFile(caCert),
        cert: await Deno.readTextFile(pubCert),
        key: await Deno.readTextFile(pubKey),
      };
      // One broker, two listeners requiring a client certificate: MQTT over TLS, and
      // MQTT over secure WebSockets.
      const wsPort = await freePort();
      const broker = await startMosquitto({
        config: [
          tlsLines(caCert, serverCert, serverKey, true),
          `listener ${wsPort} 127.0.0.1`,
          "protocol websockets",
          tlsLines(caCert, serverCert, serverKey, true),
        ].join("\n"),
      });
      brokers.push(broker);
      const mqtts = `mqtts://127.0.0.1:${broker.port}`;
      const wss = `wss://127.0.0.1:${wsPort}`;
      const tlsArgs = ["--mqtt-ca-file", caCert, "--mqtt-cert-file", cert, "--mqtt-key-file", key];
      db = await createTestDatabase();
      const sql = db.sql;
      const dbUrl = db.url;
      const user = crypto.randomUUID();
      await sql`insert into users (id) values (${user})`;
      await sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
      const stored = async (value: string) =>
        (await sql`select 1 from feed_values v join feeds f on f.id = v.feed_id
          where f.user_id = ${user} and v.value = ${value}`).length === 1;

      for (const [scheme, url] of [["mqtts://", mqtts], ["wss://", wss]]) {
        await t.step(
          `serve over ${scheme} with --mqtt-ca-file/--mqtt-cert-file/--mqtt-key-file stores a reading`,
          async () => {
            const value = scheme === "wss://" ? "22.5" : "21.5";
            const serve = await startTestServe({
              databaseUrl: dbUrl,
              mqttUrl: url,
              protocolVersion: 5,
              args: [...tlsArgs, "--batch-interval-ms", "50"],
            });
            let pub: MqttClient | null = null;
            try {
              assert.equal(serve.source.connected, true);
              pub = await connected(url, { ...pubTls, clientId: `pub-${serve.prefix}` });
              await pub.publishAsync(serve.feedTopic(user, "dev1", "temp"), value, { qos: 1 });
              await waitFor(`the reading ${value} stored`, () => stored(value));
            } finally {
              if (pub) await endClient(pub);
              await serve.stop();
            }
          },
        );
      }

      await t.step("without a client certificate the broker refuses: one line", async () => {
        await assertServeFails(
          ["--mqtt-url", mqtts, "--mqtt-ca-file", caCert, "--database-url", dbUrl],
          /^feedline: cannot connect to MQTT broker mqtts:\/\/127\.0\.0\.1:\d+: TLS: the broker requires a client certificate \(.*\); set --mqtt-cert-file and --mqtt-key-file/,
        );
      });

      await t.step("a wrong CA: one line naming the CA file to check", async () => {
        await assertServeFails(
          [
            ...["--mqtt-url", mqtts, "--database-url", dbUrl, "--mqtt-ca-file", otherCaCert],
            ...["--mqtt-cert-file", cert, "--mqtt-key-file", key],
          ],
          new RegExp(
            `TLS: the broker's certificate does not verify against the CA in --mqtt-ca-file ` +
              `"${otherCaCert}" \\(.*\\).*check --mqtt-ca-file \\(MQTT_CA_FILE\\)`,
          ),
        );
      });

      await t.step("a missing key file: one line naming the file", async () => {
        const missing = `${pki!.dir}/nope.key`;
        await assertServeFails(
          [
            ...["--mqtt-url", mqtts, "--database-url", dbUrl, "--mqtt-ca-file", caCert],
            ...["--mqtt-cert-file", cert, "--mqtt-key-file", missing],
          ],
          new RegExp(`^feedline: cannot read --mqtt-key-file "${missing}": no such file$`),
        );
      });

      await t.step("an expired client certificate: one line naming the file", async () => {
        const [oldCert, oldKey] = await pki!.expired("feedline-old");
        await assertServeFails(
          [
            ...["--mqtt-url", mqtts, "--database-url", dbUrl, "--mqtt-ca-file", caCert],
            ...["--mqtt-cert-file", oldCert, "--mqtt-key-file", oldKey],
          ],
          new RegExp(
            `^feedline: --mqtt-cert-file "${oldCert}": the certificate CN=feedline-old ` +
              `expired on 2020-01-02T00:00:00Z$`,
          ),
        );
      });

      await t.step("an expired server certificate: one line naming the CA file", async () => {
        const [oldCert, oldKey] = await pki!.expired("localhost");
        const expired = await startMosquitto({
          config: tlsLines(caCert, oldCert, oldKey, false),
        });
        brokers.push(expired);
        await assertServeFails(
          [
            ...["--mqtt-url", `mqtts://127.0.0.1:${expired.port}`, "--database-url", dbUrl],
            ...["--mqtt-ca-file", caCert],
          ],
          new RegExp(
            `TLS: the broker's certificate does not verify against the CA in --mqtt-ca-file ` +
              `"${caCert}" \\(.*\\): it is signed by another CA, or out of its dates; ` +
              `check --mqtt-ca-file \\(MQTT_CA_FILE\\) and the broker certificate's dates`,
          ),
        );
      });

      await t.step("--mqtt-insecure connects to a self-signed broker and warns", async () => {
        // The wrong CA's certificate is self-signed (CN=otherca): a development broker.
        const selfSigned = await startMosquitto({
          config: tlsLines(otherCaCert, otherCaCert, `${pki!.dir}/otherca.key`, false),
        });
        brokers.push(selfSigned);
        const url = `mqtts://127.0.0.1:${selfSigned.port}`;
        // Not trusted without the opt-out: the system's CAs do not know it.
        await assert.rejects(
          startTestServe({ databaseUrl: dbUrl, mqttUrl: url, protocolVersion: 5 }),
          (e: unknown) =>
            e instanceof FeedlineError && e.code === "BROKER_UNREACHABLE" &&
            /a CA the system trusts .*or --mqtt-insecure/.test(e.message),
        );
        const lines: Record<string, unknown>[] = [];
        const serve = await startTestServe({
          databaseUrl: dbUrl,
          mqttUrl: url,
          protocolVersion: 5,
          args: ["--mqtt-insecure"],
          log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
        });
        try {
          assert.equal(serve.source.connected, true);
          const warning = lines.find((l) => l.msg === INSECURE_WARNING);
          assert.equal(warning?.level, "warn", "the warning is logged at start");
        } finally {
          await serve.stop();
        }
      });

      await t.step(
        "replay --publish over mqtts:// with the CA and a client certificate",
        async () => {
          const prefix = uniquePrefix();
          const sub = await connected(mqtts, { ...pubTls, clientId: `sub-${prefix}` });
          const received: string[] = [];
          sub.on("message", (topic, payload) => received.push(`${topic} ${payload}`));
          const dir = await Deno.makeTempDir();
          try {
            await sub.subscribeAsync(`${prefix}/#`, { qos: 1 });
            const file = `${dir}/capture.jsonl`;
            await Deno.writeTextFile(
              file,
              encodeCaptureLine({
                topic: `${prefix}/a`,
                payload: new TextEncoder().encode("hello"),
                qos: 1,
                retain: false,
                receivedAtUs: 1_735_689_600_000_000,
              }) + "\n",
            );
            const config = parseReplayArgs(["--publish", "--progress", "off", file], {
              MQTT_URL: mqtts,
              MQTT_CA_FILE: caCert,
              MQTT_CERT_FILE: cert,
              MQTT_KEY_FILE: key,
            });
            const totals = await runReplay(config, {
              out: () => {},
              err: () => {},
              errIsTerminal: false,
            });
            assert.equal(totals.published, 1);
            await waitFor("the message at the subscriber", () => received.length === 1);
            assert.deepEqual(received, [`${prefix}/a hello`]);
          } finally {
            await endClient(sub);
            await Deno.remove(dir, { recursive: true });
          }
        },
      );

      await t.step("simulate takes the TLS options and publishes over mqtts://", async () => {
        for (const flag of ["mqtt-ca-file", "mqtt-cert-file", "mqtt-key-file", "mqtt-insecure"]) {
          assert.ok(
            Object.values(simulateOptions).some((o) => o.flag === flag),
            `simulate's table has --${flag}`,
          );
        }
        const config = parseSimulateArgs(tlsArgs, {});
        assert.equal(config.mqttCaFile, caCert);
        const r = await feedline([
          "simulate",
          ...["--mqtt-url", mqtts, ...tlsArgs, "--no-register", "--json"],
          ...["--users", "1", "--devices", "1", "--count", "3", "--rate", "0"],
        ]);
        assert.equal(r.code, 0, r.stderr);
        const summary = JSON.parse(r.stdout);
        assert.equal(summary.messages, 3);
        assert.equal(summary.acked, 3, "the broker acknowledged all three (QoS 1)");
        assert.equal(summary.connects, 1);
      });

      await t.step(
        "checks before connecting: TLS options need a TLS URL, key matches cert",
        async () => {
          const line = async (url: string, s: Parameters<typeof resolveMqttTls>[1]) => {
            try {
              await resolveMqttTls(url, s);
            } catch (error) {
              assert.ok(error instanceof FeedlineError);
              return error.message;
            }
            return "no error";
          };
          assert.match(
            await line("mqtt://127.0.0.1:1883", { caFile: caCert }),
            /--mqtt-ca-file needs a TLS broker URL \(mqtts:\/\/ or wss:\/\/\)/,
          );
          assert.match(
            await line(mqtts, { certFile: cert, keyFile: serverKey }),
            new RegExp(`--mqtt-key-file "${serverKey}" is not the key of --mqtt-cert-file`),
          );
          assert.match(
            await line(`${mqtts}?rejectUnauthorized=false`, {}),
            /use --mqtt-insecure/,
          );
          assert.deepEqual(await resolveMqttTls("mqtt://127.0.0.1:1883", {}), {});
        },
      );
    } finally {
      for (const b of brokers) await b.close().catch(() => {});
      await db?.close();
      if (pki) await Deno.remove(pki.dir, { recursive: true }).catch(() => {});
    }
  },
});
