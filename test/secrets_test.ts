/**
 * Secrets never leave feedline (docs/security.md#secrets): `serve` as a child process,
 * with passwords in its URLs, in `*_FILE` files and on its command line, at log level
 * debug; everything it prints, serves over HTTP and writes to disk is searched for them.
 */
import assert from "node:assert/strict";
import { verifyEmbeddedBooks } from "./support/audit.ts";
import { startMosquitto } from "./support/broker.ts";
import {
  connectClient,
  endClient,
  HAVE_MOSQUITTO,
  publish,
  userId,
  waitFor,
} from "./support/serve.ts";
import { PG_TLS_MISSING, startTlsPostgres } from "./support/tls.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A child `feedline ARGS` with stdout and stderr collected as text. */
function spawn(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", MQTT_URL: "", DATABASE_URL: "", MQTT_PASSWORD: "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = { stdout: "", stderr: "" };
  const drain = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
    // The status page script's DOM types and Deno's disagree on TextDecoderStream.
    const decoder = new TextDecoderStream() as TransformStream<Uint8Array, string>;
    for await (const chunk of stream.pipeThrough(decoder)) out[key] += chunk;
  };
  const reading = Promise.all([drain(child.stdout, "stdout"), drain(child.stderr, "stderr")]);
  return {
    out,
    async exit(signal?: Deno.Signal): Promise<number> {
      if (signal) {
        try {
          child.kill(signal);
        } catch { /* already exited */ }
      }
      const status = await child.status;
      await reading;
      return status.code;
    },
  };
}

function assertNoSecret(what: string, text: string, secrets: string[]) {
  for (const secret of secrets) {
    assert.ok(!text.includes(secret), `${what} contains the secret ${secret}:\n${text}`);
    assert.ok(
      !text.includes(encodeURIComponent(secret)),
      `${what} contains the secret ${secret}, encoded`,
    );
  }
}

Deno.test({
  name: "serve at log level debug shows no secret in logs, HTTP pages, endpoints.json or errors",
  ignore: !HAVE_MOSQUITTO,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "feedline-secrets-" });
    const mosquitto = await startMosquitto();
    const URL_SECRET = "UrlSecret-7f3a9c";
    const FILE_SECRET = "FileSecret-91bc4e";
    const TOKEN_SECRET = "TokenSecret-2d8f";
    const secrets = [URL_SECRET, FILE_SECRET, TOKEN_SECRET];
    await Deno.writeTextFile(`${dir}/mqtt_password`, `${FILE_SECRET}\n`);
    // Anonymous Mosquitto ignores the credentials; what matters is where serve puts them.
    const mqttUrl = `mqtt://feedline:${URL_SECRET}@127.0.0.1:${mosquitto.port}/?token=` +
      TOKEN_SECRET;
    const env = {
      MQTT_URL: mqttUrl,
      MQTT_PASSWORD_FILE: `${dir}/mqtt_password`,
      FEEDLINE_LOG_LEVEL: "debug",
      FEEDLINE_DATA_DIR: `${dir}/data`,
      FEEDLINE_EMBEDDED_DB_PORT: "0",
      HTTP_ADDR: "127.0.0.1:0",
      FEEDLINE_BATCH_INTERVAL_MS: "200",
    };
    try {
      await t.step("--print-config: sources shown, secrets masked, exit 0", async () => {
        const p = spawn(["serve", "--print-config", "--log-format", "json"], env);
        assert.equal(await p.exit(), 0, p.out.stderr);
        assert.match(p.out.stdout, /^mqtt-password +\*\*\* +MQTT_PASSWORD_FILE \(/m);
        assert.match(p.out.stdout, /^mqtt-url +mqtt:\/\/feedline:\*\*\*@127\.0\.0\.1/m);
        assert.match(p.out.stdout, /^log-level +debug +FEEDLINE_LOG_LEVEL$/m);
        assertNoSecret("--print-config", p.out.stdout + p.out.stderr, secrets);
      });

      await t.step("a running serve: logs, /metrics, /, /api/*, endpoints.json", async () => {
        const p = spawn(["serve", "--log-format", "json"], env);
        try {
          await waitFor("http listening", () => p.out.stdout.includes('"http listening"'), 60_000);
          await waitFor("subscribed", () => p.out.stdout.includes('"subscribed"'), 30_000);
          const port = /"status":"http:\/\/127\.0\.0\.1:(\d+)\//.exec(p.out.stdout)![1];
          const pub = await connectClient(mosquitto.url, 5);
          const user = userId();
          try {
            await publish(pub, `${user}/d1/feeds/temp`, "21.5");
            await publish(pub, `${user}/d1/feeds/temp`, '{"value": 1, "ts": "yesterday"}');
            await publish(pub, `${user}/d1/status`, "online");
          } finally {
            await endClient(pub);
          }
          const get = async (path: string) => {
            const res = await fetch(`http://127.0.0.1:${port}${path}`);
            return await res.text();
          };
          await waitFor(
            "the three messages processed",
            async () => /feedline_messages_processed_total 3\b/.test(await get("/metrics")),
            30_000,
          ).catch(async (error) => {
            throw new Error(
              `${error.message}; serve's output:\n${p.out.stdout}${p.out.stderr}` +
                (await get("/metrics")),
            );
          });
          assert.match(await get("/metrics"), /feedline_rejects_total\{reason="bad_timestamp"\} 1/);
          for (const path of ["/metrics", "/", "/api/live", "/api/feeds", "/api/rejects"]) {
            assertNoSecret(path, await get(path), secrets);
          }
          assertNoSecret("/api/devices", await get("/api/devices"), secrets);
          const endpoints = await Deno.readTextFile(`${dir}/data/endpoints.json`);
          assert.match(endpoints, /"mqttUrl": "mqtt:\/\/feedline@127\.0\.0\.1:/);
          assertNoSecret("endpoints.json", endpoints, secrets);
        } finally {
          assert.equal(await p.exit("SIGTERM"), 0, p.out.stderr);
        }
        assert.match(p.out.stdout, /"msg":"stopped"/);
        assertNoSecret("serve's output", p.out.stdout + p.out.stderr, secrets);
        // Its books against its embedded database (test/support/audit.ts).
        const stopped = p.out.stdout.split("\n").filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l)).find((l) => l.msg === "stopped") ?? null;
        await verifyEmbeddedBooks(`${dir}/data`, [{ stopped }]);
      });
    } finally {
      await mosquitto.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a wrong database password: one error line, with no secret, also with --verbose",
  ignore: PG_TLS_MISSING !== null || !HAVE_MOSQUITTO,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const pg = await startTlsPostgres();
    const mosquitto = await startMosquitto();
    const dir = await Deno.makeTempDir({ prefix: "feedline-secrets-" });
    const DB_SECRET = "WrongDbSecret-5d2e1a";
    const KEY_SECRET = "KeyPassSecret-77aa";
    const CLI_SECRET = "CliSecret-0b9d3c";
    try {
      await Deno.writeTextFile(
        `${dir}/database_url`,
        `postgres://pwuser:${DB_SECRET}@127.0.0.1:${pg.port}/postgres?sslmode=require` +
          `&sslpassword=${KEY_SECRET}\n`,
      );
      const p = spawn([
        "serve",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--verbose",
        "--mqtt-password",
        CLI_SECRET,
      ], {
        DATABASE_URL_FILE: `${dir}/database_url`,
        MQTT_URL: mosquitto.url,
        HTTP_ADDR: "off",
      });
      assert.equal(await p.exit(), 1);
      const all = p.out.stdout + p.out.stderr;
      assert.match(p.out.stderr, /--mqtt-password on the command line is visible/);
      assert.match(
        p.out.stderr,
        /^feedline: cannot connect to PostgreSQL at postgres:\/\/pwuser:\*\*\*@127\.0\.0\.1:\d+\/postgres \(sslmode=require\): password authentication failed for user "pwuser"/m,
      );
      assertNoSecret("serve's output", all, [DB_SECRET, KEY_SECRET, CLI_SECRET]);
    } finally {
      await mosquitto.close();
      await pg.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
