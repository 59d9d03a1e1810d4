import assert from "node:assert/strict";
import type postgres from "postgres";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { encodeCaptureLine, formatMicros } from "../src/capture/format.ts";
import { FeedlineError } from "../src/errors.ts";
import type { ReplayTotals } from "../src/replay/totals.ts";
import { createTestBroker } from "./support/broker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { connectClient, endClient, uniquePrefix, userId, waitFor } from "./support/serve.ts";

const BASE_US = Date.UTC(2026, 0, 1) * 1000;

/** Runs replay in-process against `dbUrl`; returns its totals and what it printed. */
async function replay(
  dbUrl: string,
  args: string[],
  stdin?: ReadableStream<Uint8Array>,
): Promise<{ totals: ReplayTotals; out: string; err: string }> {
  let out = "";
  let err = "";
  const config = parseReplayArgs(
    ["--database-url", dbUrl, "--db-pool-size", "2", "--progress", "off", ...args],
    {},
  );
  const totals = await runReplay(config, {
    out: (t) => out += t,
    err: (t) => err += t,
    errIsTerminal: false,
    stdin,
  });
  return { totals, out, err };
}

function line(topic: string, payload: string, us: number, extra: { qos?: 0 | 1 } = {}): string {
  return encodeCaptureLine({
    topic,
    payload: new TextEncoder().encode(payload),
    qos: extra.qos ?? 1,
    retain: false,
    receivedAtUs: us,
  });
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "feedline-replay-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Everything replay can change, in a stable order. */
async function snapshot(sql: postgres.Sql): Promise<string> {
  return JSON.stringify({
    values: await sql`
      select feed_id, value, value_text, created_at, received_at from feed_values
      order by feed_id, created_at`,
    feeds: await sql`select id, last_value, last_value_at, updated_at from feeds order by id`,
    devices: await sql`
      select id, status, last_seen_at, status_changed_at from devices order by id`,
    events: await sql`
      select device_id, status, payload, at from device_status_events order by device_id, at`,
    rejects: await sql`
      select id, topic, payload, payload_size, reason, detail, received_at
      from ingest_rejects order by id`,
  });
}

/** A user with device dev1 and feeds temp and hum. */
async function registerUser(sql: postgres.Sql): Promise<string> {
  const user = userId();
  await sql`insert into users (id) values (${user})`;
  await sql`insert into devices (user_id, code) values (${user}, 'dev1')`;
  await sql`insert into feeds (user_id, key) values (${user}, 'temp'), (${user}, 'hum')`;
  return user;
}

/** A fresh database with a registered user, and a capture file holding `content(user)`. */
async function withCapture(
  content: (user: string) => string,
  fn: (ctx: { db: TestDatabase; user: string; file: string }) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  try {
    const user = await registerUser(db.sql);
    await withTempDir(async (dir) => {
      const file = `${dir}/capture.jsonl`;
      await Deno.writeTextFile(file, content(user));
      await fn({ db, user, file });
    });
  } finally {
    await db.close();
  }
}

/** A capture with readings, a many-feeds message, a device timestamp, a status and a reject. */
function sampleCapture(user: string): string[] {
  return [
    line(`${user}/dev1/feeds/temp`, "21.5", BASE_US + 1),
    line(`${user}/dev1/feeds/temp`, "21.6", BASE_US + 2),
    line(`${user}/dev1/feeds/temp`, '{"value": 19, "ts": "2025-12-31T23:00:00Z"}', BASE_US + 3),
    line(`${user}/dev1/feeds`, '{"temp": 22, "hum": 40}', BASE_US + 4),
    line(`${user}/dev1/status`, "online", BASE_US + 5),
    line(`${user}/dev1/feeds/hum`, "not\u0001text", BASE_US + 6),
  ];
}

Deno.test("a replayed capture stores each reading at its captured receive time, and a second replay changes nothing", () =>
  withCapture((user) => sampleCapture(user).join("\n") + "\n", async ({ db, file }) => {
    const first = await replay(db.url, [file]);
    assert.equal(first.totals.messages, 6);
    assert.equal(first.totals.stored, 5);
    assert.equal(first.totals.statuses, 1);
    assert.deepEqual(first.totals.rejected, { bad_payload: 1 });
    assert.match(first.out, /stored\s+5 readings/);
    const rows = await db.sql`
        select f.key, v.value, v.created_at, v.received_at
        from feed_values v join feeds f on f.id = v.feed_id order by v.received_at, f.key`;
    assert.deepEqual(
      rows.map((r) => `${r.key}=${r.value}@${r.created_at.toISOString()}`),
      [
        "temp=21.5@2026-01-01T00:00:00.000Z",
        "temp=21.6@2026-01-01T00:00:00.000Z",
        "temp=19@2025-12-31T23:00:00.000Z",
        "hum=40@2026-01-01T00:00:00.000Z",
        "temp=22@2026-01-01T00:00:00.000Z",
      ],
    );
    // Microseconds survive: compare in the database, where timestamptz keeps them.
    const [exact] = await db.sql`
        select count(*)::int as n from feed_values
        where received_at = ${formatMicros(BASE_US + 2)}::text::timestamptz
          and created_at = received_at`;
    assert.equal(exact.n, 1);

    const before = await snapshot(db.sql);
    const second = await replay(db.url, [file]);
    assert.equal(second.totals.stored, 0);
    assert.equal(second.totals.duplicates, 5);
    assert.equal(await snapshot(db.sql), before);
  }));

Deno.test("a gzip-compressed capture is replayed like the plain file", async () => {
  const db = await createTestDatabase();
  try {
    const user = await registerUser(db.sql);
    await withTempDir(async (dir) => {
      const text = sampleCapture(user).join("\n") + "\n";
      const gz = await new Response(
        new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")),
      ).arrayBuffer();
      await Deno.writeFile(`${dir}/capture.jsonl.gz`, new Uint8Array(gz));
      const { totals } = await replay(db.url, [`${dir}/capture.jsonl.gz`]);
      assert.equal(totals.messages, 6);
      assert.equal(totals.stored, 5);
      const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
      assert.equal(n, 5);
    });
  } finally {
    await db.close();
  }
});

Deno.test("mosquitto_sub -v output is replayed with spaces in payloads kept", async () => {
  const db = await createTestDatabase();
  try {
    const user = await registerUser(db.sql);
    await withTempDir(async (dir) => {
      const file = `${dir}/sub.txt`;
      await Deno.writeTextFile(
        file,
        [
          `${user}/dev1/feeds/temp 21.5`,
          `${user}/dev1/feeds/hum door is open`,
          `${user}/dev1/feeds/temp {"value": 20, "ts": 1767225600}`,
          `${user}/dev1/status offline`,
        ].join("\n") + "\n",
      );
      const { totals } = await replay(db.url, [file]);
      assert.equal(totals.stored, 3);
      assert.equal(totals.statuses, 1);
      const [hum] = await db.sql`
        select v.value_text from feed_values v join feeds f on f.id = v.feed_id
        where f.key = 'hum'`;
      assert.equal(hum.value_text, "door is open");
      const [device] = await db.sql`select status from devices where user_id = ${user}`;
      assert.equal(device.status, "offline");
    });
  } finally {
    await db.close();
  }
});

Deno.test("replay - reads the capture from standard input", async () => {
  const db = await createTestDatabase();
  try {
    const user = await registerUser(db.sql);
    const stdin = new Blob([sampleCapture(user).join("\n")]).stream();
    const { totals } = await replay(db.url, ["-"], stdin);
    assert.equal(totals.messages, 6);
    assert.equal(totals.stored, 5);
  } finally {
    await db.close();
  }
});

Deno.test("--dry-run reports what would be stored and rejected, and leaves every table as it was", () =>
  withCapture((user) => sampleCapture(user).join("\n"), async ({ db, file }) => {
    const before = await snapshot(db.sql);
    const { totals, out } = await replay(db.url, ["--dry-run", file]);
    assert.equal(totals.stored, 5);
    assert.deepEqual(totals.rejected, { bad_payload: 1 });
    assert.match(out, /dry run/);
    assert.match(out, /would store\s+5 readings/);
    assert.equal(await snapshot(db.sql), before);
  }));

Deno.test("--since, --until and --topic select messages by receive time and topic filter", () =>
  withCapture((user) => {
    const second = 1_000_000;
    return [
      line(`${user}/dev1/feeds/temp`, "1", BASE_US),
      line(`${user}/dev1/feeds/temp`, "2", BASE_US + second),
      line(`${user}/dev1/feeds/hum`, "3", BASE_US + second + 1),
      line(`${user}/dev1/feeds/temp`, "4", BASE_US + 2 * second),
    ].join("\n");
  }, async ({ db, file }) => {
    const { totals } = await replay(db.url, [
      "--since",
      "2026-01-01T00:00:01Z",
      "--until",
      String(Date.UTC(2026, 0, 1, 0, 0, 2)),
      "--topic",
      `+/dev1/feeds/temp`,
      file,
    ]);
    assert.equal(totals.messages, 4);
    assert.equal(totals.filtered, 3);
    const values = await db.sql`select value from feed_values`;
    assert.deepEqual(values.map((v) => v.value), [2]);
  }));

Deno.test("bad lines are reported with file and line, counted, and the rest is replayed", () =>
  withCapture((user) =>
    [
      line(`${user}/dev1/feeds/temp`, "1", BASE_US + 1),
      '{"topic": "x", "payload": ',
      '{"payload": "2"}',
      line(`${user}/dev1/feeds/temp`, "3", BASE_US + 3),
    ].join("\n"), async ({ db, file }) => {
    const { totals, err, out } = await replay(db.url, [file]);
    assert.equal(totals.badLines, 2);
    assert.equal(totals.stored, 2);
    assert.match(err, new RegExp(`${file}:2: broken JSON`));
    assert.match(err, new RegExp(`${file}:3: missing "topic"`));
    assert.match(out, /2 bad lines/);
  }));

Deno.test("--strict stops reading at the first bad line and closes the file", () =>
  withCapture((user) => {
    const lines = [line(`${user}/dev1/feeds/temp`, "1", BASE_US + 1), "{bad"];
    // Enough lines after the bad one that the reader has more to give when it stops.
    for (let i = 0; i < 20_000; i++) {
      lines.push(line(`${user}/dev1/feeds/temp`, "2", BASE_US + 10 + i));
    }
    return lines.join("\n");
  }, async ({ db, file }) => {
    const { totals } = await replay(db.url, ["--strict", file]);
    assert.equal(totals.stoppedAt, `${file}:2`);
    assert.equal(totals.stored, 1);
  }));

Deno.test("--strict stops at the first bad line and the command exits 1 naming it", () =>
  withCapture((user) =>
    [
      line(`${user}/dev1/feeds/temp`, "1", BASE_US + 1),
      "{not json",
      line(`${user}/dev1/feeds/temp`, "3", BASE_US + 3),
    ].join("\n"), async ({ db, file }) => {
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "replay",
        "--strict",
        "--db-pool-size",
        "2",
        file,
      ],
      env: { DATABASE_URL: db.url, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    assert.equal(result.code, 1, stderr);
    assert.match(stderr, new RegExp(`stopped at the bad line ${file}:2 \\(--strict\\)`));
    assert.doesNotMatch(stderr, /at .*\.ts:\d+/, "no stack trace without --verbose");
    const values = await db.sql`select value from feed_values`;
    assert.deepEqual(values.map((v) => v.value), [1]);
  }));

Deno.test("--rejects stores unknown_feed messages once the feed exists and deletes their rows; others keep one row", () =>
  withCapture((user) =>
    [
      line(`${user}/dev1/feeds/pressure`, "1013", BASE_US + 1),
      line(`${user}/dev1/feeds/pressure`, "1014", BASE_US + 2),
      line(`${user}/dev1/feeds`, '{"pressure": 1015, "wind": 3}', BASE_US + 3),
      line(`${user}/dev1/feeds/temp`, "bad\u0001", BASE_US + 4),
    ].join("\n"), async ({ db, user, file }) => {
    await replay(db.url, [file]);
    const rejected = await db.sql`select reason from ingest_rejects order by received_at`;
    assert.deepEqual(rejected.map((r) => r.reason), [
      "unknown_feed",
      "unknown_feed",
      "unknown_feed",
      "bad_payload",
    ]);

    await db.sql`insert into feeds (user_id, key) values (${user}, 'pressure')`;
    const dry = await replay(db.url, ["--rejects", "--reason", "unknown_feed", "--dry-run"]);
    assert.equal(dry.totals.stored, 3);
    assert.equal(dry.totals.rejectsCleared, 2);
    assert.equal((await db.sql`select count(*)::int as n from ingest_rejects`)[0].n, 4);

    const { totals } = await replay(db.url, ["--rejects", "--reason", "unknown_feed"]);
    assert.equal(totals.messages, 3);
    assert.equal(totals.stored, 3);
    assert.equal(totals.rejectsCleared, 2);
    assert.deepEqual(totals.rejected, { unknown_feed: 1 });
    const values = await db.sql`
        select v.value from feed_values v join feeds f on f.id = v.feed_id
        where f.key = 'pressure' order by v.created_at`;
    assert.deepEqual(values.map((v) => v.value), [1013, 1014, 1015]);
    const left = await db.sql`
        select reason, detail, topic from ingest_rejects order by received_at`;
    assert.deepEqual(left.map((r) => `${r.reason}: ${r.detail}`), [
      'unknown_feed: no feed "wind" for this user',
      "bad_payload: text value contains control characters",
    ]);

    // Again, all reasons: nothing new is stored and no reject row is duplicated.
    const before = await snapshot(db.sql);
    const again = await replay(db.url, ["--rejects"]);
    assert.equal(again.totals.messages, 2);
    assert.equal(again.totals.rejectsCleared, 0);
    const after = await db.sql`select reason, received_at from ingest_rejects`;
    assert.equal(after.length, 2);
    const valuesAfter = JSON.parse(await snapshot(db.sql)).values;
    assert.deepEqual(valuesAfter, JSON.parse(before).values);
  }));

Deno.test("--rejects leaves rows whose payload was capped in place and counts them", async () => {
  const db = await createTestDatabase();
  try {
    const user = await registerUser(db.sql);
    await db.sql`
      insert into ingest_rejects (topic, payload, payload_size, reason, received_at)
      values (${`${user}/dev1/feeds/x`}, '\\x3132'::bytea, 5000, 'too_large', now())`;
    const { totals } = await replay(db.url, ["--rejects"]);
    assert.equal(totals.messages, 0);
    assert.equal(totals.rejectsUnreplayable, 1);
    assert.equal((await db.sql`select count(*)::int as n from ingest_rejects`)[0].n, 1);
  } finally {
    await db.close();
  }
});

Deno.test("--publish sends each message with its topic, payload, QoS and retain flag, in order and paced", async () => {
  const broker = await createTestBroker();
  const prefix = uniquePrefix();
  const sub = await connectClient(broker.url, broker.protocolVersion, {
    clientId: `replay-sub-${prefix}`,
  });
  const received: { topic: string; payload: string; qos: number; at: number }[] = [];
  sub.on("message", (topic, payload, packet) => {
    received.push({ topic, payload: payload.toString(), qos: packet.qos, at: performance.now() });
  });
  try {
    await new Promise((resolve, reject) =>
      sub.subscribe(`${prefix}/#`, { qos: 1 }, (e) => e ? reject(e) : resolve(null))
    );
    await withTempDir(async (dir) => {
      const file = `${dir}/capture.jsonl`;
      // 600 ms of traffic; at --speed 2 the last message goes out 300 ms after the first.
      await Deno.writeTextFile(
        file,
        [
          line(`${prefix}/a`, "first", BASE_US, { qos: 1 }),
          line(`${prefix}/b`, "second", BASE_US + 300_000, { qos: 0 }),
          line(`${prefix}/c`, "third", BASE_US + 600_000, { qos: 1 }),
        ].join("\n"),
      );
      const config = parseReplayArgs(
        ["--publish", "--speed", "2", "--progress", "off", file],
        { MQTT_URL: broker.url, MQTT_PROTOCOL: broker.protocolVersion === 5 ? "5" : "3.1.1" },
      );
      const totals = await runReplay(config, {
        out: () => {},
        err: () => {},
        errIsTerminal: false,
      });
      assert.equal(totals.published, 3);
      await waitFor("three messages at the subscriber", () => received.length === 3);
      assert.deepEqual(
        received.map((m) => `${m.topic} ${m.payload} qos${m.qos}`),
        [`${prefix}/a first qos1`, `${prefix}/b second qos0`, `${prefix}/c third qos1`],
      );
      // Pacing is a lower bound (the replay waits), not a speed claim.
      assert.ok(received[2].at - received[0].at >= 250, "messages were paced");
    });
  } finally {
    await endClient(sub);
    await broker.close();
  }
});

Deno.test("replay refuses conflicting or missing arguments with a usage error", () => {
  const cases: [string[], RegExp][] = [
    [[], /give one or more capture files/],
    [["--rejects", "a.jsonl"], /give no files/],
    [["--reason", "unknown_feed", "a.jsonl"], /--reason goes with --rejects/],
    [["--publish", "--dry-run", "a.jsonl"], /--publish cannot be combined/],
    [["-", "-"], /stdin \(-\) can be read only once/],
  ];
  for (const [args, expected] of cases) {
    assert.throws(
      () => parseReplayArgs(args, {}),
      (e: unknown) => e instanceof FeedlineError && e.code === "USAGE" && expected.test(e.message),
      args.join(" "),
    );
  }
  assert.throws(
    () => parseReplayArgs(["--rejects", "--reason", "nonsense"], {}),
    (e: unknown) =>
      e instanceof FeedlineError && e.code === "CONFIG_INVALID" && /--reason/.test(e.message),
  );
  assert.throws(
    () => parseReplayArgs(["--since", "tomorrow", "a"], {}),
    (e: unknown) => e instanceof FeedlineError && /--since must be an ISO 8601/.test(e.message),
  );
});

Deno.test("a file that cannot be read stops replay before anything is written", async () => {
  const db = await createTestDatabase();
  try {
    await assert.rejects(
      () => replay(db.url, ["/nonexistent/capture.jsonl"]),
      (e: unknown) =>
        e instanceof FeedlineError && e.code === "BAD_INPUT" &&
        e.message.includes("/nonexistent/capture.jsonl"),
    );
  } finally {
    await db.close();
  }
});

Deno.test("mosquitto_sub -v input without timestamps: replay warns that a second run stores them again", async () => {
  const db = await createTestDatabase();
  try {
    const user = await registerUser(db.sql);
    await withTempDir(async (dir) => {
      const file = `${dir}/sub.txt`;
      await Deno.writeTextFile(
        file,
        [
          `${user}/dev1/feeds/temp 21.5`,
          `${user}/dev1/feeds/hum 40`,
          `${user}/dev1/feeds/temp {"value": 20, "ts": 1767225600}`,
          `${user}/dev1/status offline`,
          `not-a-user/dev1/feeds/temp 1`, // bad_user_id: its dead-letter row is keyed by the receive time
        ].join("\n") + "\n",
      );
      const first = await replay(db.url, [file]);
      assert.equal(first.totals.untimed, 4, "the one with a ts of its own is keyed by it");
      assert.match(
        first.out,
        /^warning: 4 messages have no time of their own \(no device ts, and the input no receive time\); replaying them again will store their readings, status events or rejects again$/m,
      );
      // The warning is true: a second run stores the untimed readings, the status event
      // and the reject again.
      const second = await replay(db.url, [file]);
      assert.equal(second.totals.untimed, 4);
      const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
      assert.equal(n, 5);
      const [{ events }] = await db.sql`select count(*)::int as events from device_status_events`;
      assert.equal(events, 2);
      const [{ rejects }] = await db.sql`select count(*)::int as rejects from ingest_rejects`;
      assert.equal(rejects, 2);
      // A capture (with receive times) gets no warning.
      const capture = `${dir}/capture.jsonl`;
      await Deno.writeTextFile(capture, sampleCapture(user).join("\n"));
      const timed = await replay(db.url, [capture]);
      assert.equal(timed.totals.untimed, 0);
      assert.doesNotMatch(timed.out, /warning/);
    });
  } finally {
    await db.close();
  }
});

Deno.test("README and replay --help say which inputs replay idempotently, and how a backfill works", async () => {
  const { help } = await import("../commands/replay.ts");
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const flat = (text: string) => text.replace(/\s+/g, " ");
  for (const [name, text] of [["README", flat(readme)], ["replay --help", flat(help)]]) {
    assert.match(text, /Replaying a capture twice changes nothing/, name);
    assert.match(text, /mosquitto_sub -v['`]? output has no receive times/, name);
    assert.match(text, /stored again on every replay/, name);
    assert.match(text, /--auto-register/, name);
    assert.match(text, /replay --rejects/, name);
  }
  assert.doesNotMatch(readme, /Replaying a file twice changes nothing/);
  // The backfill example: a glob that matches even before any rotation, into a database
  // that accepts the fleet.
  const example = /^DATABASE_URL=\S+ deno task replay (.*)$/m.exec(readme);
  assert.ok(example, "README has the backfill example");
  assert.match(example[1], /--auto-register/);
  assert.match(example[1], /\btraffic\.jsonl\*$/);
  assert.doesNotMatch(example[1], /traffic\.jsonl\.\*/);
});

Deno.test("replay's summary adds up: read = filtered + processed, processed = stored + rejected + skipped messages", () =>
  withCapture((user) =>
    [
      line(`${user}/dev1/feeds/temp`, "1", BASE_US - 10), // before --since
      ...sampleCapture(user),
      line(`${user}/dev1/status`, "online", BASE_US + 5), // the same status event again
      line(`${user}/dev1/feeds/temp`, "21.5", BASE_US + 1), // the same reading again
      line(`${user}/ghost/feeds/nope`, "3", BASE_US + 7),
    ].join("\n") + "\n", async ({ db, file }) => {
    const { totals: t, out } = await replay(db.url, [
      "--since",
      String((BASE_US - 5) / 1000),
      file,
    ]);
    assert.equal(t.messages, 10);
    assert.equal(t.filtered, 1);
    assert.equal(t.messages, t.filtered + t.processed);
    const o = t.outcomes;
    assert.equal(t.processed, o.stored + o.rejected + o.skipped);
    // 5 readings messages + the status + its duplicate + the reading's duplicate are stored
    // (duplicates as absorbed); the control-character one and the unknown feed are rejected.
    assert.deepEqual(o, { stored: 7, rejected: 2, skipped: 0 });
    assert.match(out, /processed\s+9 messages: 7 stored, 2 rejected, 0 skipped/);
    assert.match(out, /rejected\s+2 \(.*\) messages/);
  }));
