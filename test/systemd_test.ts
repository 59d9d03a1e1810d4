/**
 * deploy/systemd/feedline.service is a unit systemd accepts (`systemd-analyze verify`), with
 * the settings docs/operations.md promises (restart on failure, its own user, a read-only
 * system, secrets by *_FILE, a clean SIGTERM stop inside TimeoutStopSec), and it and
 * feedline.env.example give serve a configuration it accepts. `.ci/run` installs Debian's
 * systemd; without `systemd-analyze` the verify step is skipped with a message.
 */
import assert from "node:assert/strict";
import { runFeedline } from "./support/serve.ts";

const UNIT = new URL("../deploy/systemd/feedline.service", import.meta.url);
const ENV_EXAMPLE = new URL(
  "../deploy/systemd/feedline.env.example",
  import.meta.url,
);

async function which(name: string): Promise<string | null> {
  for (const dir of ["/usr/bin", "/bin", "/usr/local/bin"]) {
    try {
      if ((await Deno.stat(`${dir}/${name}`)).isFile) return `${dir}/${name}`;
    } catch { /* not there */ }
  }
  return null;
}
const ANALYZE = await which("systemd-analyze");
if (!ANALYZE) {
  console.log(
    "test/systemd_test.ts: systemd-analyze is missing (apt-get install -y systemd; .ci/run does); " +
      "skipping `systemd-analyze verify`",
  );
}

/** `Key=value` lines of the unit (every occurrence, in order), by key. */
function settings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1], [...(out.get(m[1]) ?? []), m[2]]);
  }
  return out;
}

/** `NAME=value` pairs of the unit's Environment= lines and of an environment file. */
function envPairs(lines: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

Deno.test({
  name: "systemd-analyze verify accepts deploy/systemd/feedline.service",
  ignore: !ANALYZE,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "feedline-unit-" });
    try {
      // verify checks that ExecStart's program exists: stand in for the installed command.
      const stand = `${dir}/feedline`;
      await Deno.writeTextFile(stand, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      const unit = (await Deno.readTextFile(UNIT)).replace(
        "ExecStart=/usr/local/bin/feedline",
        `ExecStart=${stand}`,
      );
      await Deno.writeTextFile(`${dir}/feedline.service`, unit);
      const out = await new Deno.Command(ANALYZE!, {
        args: ["verify", "--man=no", `${dir}/feedline.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) +
        new TextDecoder().decode(out.stderr);
      // Complaints about the host's own units are not ours.
      const ours = text.split("\n").filter((l) => l.includes("feedline.service"));
      assert.deepEqual(ours, [], text);
      assert.equal(out.code, 0, text);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the unit restarts on failure, runs confined and stops by SIGTERM in time", async () => {
  const unit = settings(await Deno.readTextFile(UNIT));
  const one = (key: string) => unit.get(key)?.at(-1);
  assert.equal(one("ExecStart"), "/usr/local/bin/feedline serve");
  assert.equal(one("Restart"), "on-failure");
  assert.equal(one("DynamicUser"), "yes");
  assert.equal(one("ProtectSystem"), "strict");
  assert.equal(one("ProtectHome"), "yes");
  assert.equal(one("NoNewPrivileges"), "yes");
  assert.equal(one("KillSignal"), "SIGTERM");
  const env = envPairs(unit.get("Environment") ?? []);
  assert.equal(
    env.DATABASE_URL_FILE,
    "%d/database-url",
    "the database URL comes from a file",
  );
  assert.match(
    unit.get("LoadCredential")?.join(" ") ?? "",
    /^database-url:\/etc\/feedline\//,
  );
  // serve stops trying to write after FEEDLINE_SHUTDOWN_TIMEOUT_MS; systemd must wait longer.
  const stopSeconds = Number(/^(\d+)s$/.exec(one("TimeoutStopSec") ?? "")?.[1]);
  const shutdownMs = Number(env.FEEDLINE_SHUTDOWN_TIMEOUT_MS);
  assert.ok(
    shutdownMs > 0 && stopSeconds * 1000 >= shutdownMs + 5000,
    "TimeoutStopSec margin",
  );
});

Deno.test("the unit's and the example's settings are a configuration serve accepts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-unit-env-" });
  try {
    const unit = settings(await Deno.readTextFile(UNIT));
    const example = await Deno.readTextFile(ENV_EXAMPLE);
    assert.doesNotMatch(
      example,
      /^(DATABASE_URL|MQTT_PASSWORD)=/m,
      "no secrets in the env file",
    );
    await Deno.writeTextFile(
      `${dir}/database-url`,
      "postgres://feedline:s3cret@db.example/iot\n",
    );
    // What systemd would give serve: %d the credentials, %S and %C the state and cache dirs.
    const env: Record<string, string> = {};
    for (
      const [k, v] of Object.entries(envPairs(unit.get("Environment") ?? []))
    ) {
      env[k] = v.replace(/%[dSC]/g, dir);
    }
    Object.assign(env, envPairs(example.split("\n")));
    const r = await runFeedline(["serve", "--print-config"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /database-url\s+postgres:\/\/feedline:\*\*\*@db\.example\/iot\s+DATABASE_URL_FILE/,
    );
    assert.match(
      r.stdout,
      /mqtt-url\s+mqtt:\/\/broker\.example:1883\s+MQTT_URL/,
    );
    assert.match(
      r.stdout,
      /shutdown-timeout-ms\s+20000\s+FEEDLINE_SHUTDOWN_TIMEOUT_MS/,
    );
    assert.doesNotMatch(r.stdout + r.stderr, /s3cret/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
