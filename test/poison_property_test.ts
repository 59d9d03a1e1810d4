/**
 * Issue 10, "Poison messages: no single message may stop ingest", as seeded properties
 * over generated hostile traffic (test/support/poison.ts):
 *
 * 1. `decode()` never throws and answers every message with readings, a status, a skip
 *    or a reject with a known reason; what it accepts, the database can hold.
 * 2. `processBatch()` against a real PostgreSQL commits every batch of hostile messages
 *    mixed with valid ones: every valid reading and status is stored, and every message
 *    is accounted for exactly once, its reject rows agreeing with the outcome counts.
 * 3. A real `serve` process fed hostile and valid traffic through Mosquitto at QoS 1,
 *    restarted halfway, stays up, stores every valid message and is ready at the end.
 *
 * The seed is fixed (`FEEDLINE_PROPERTY_SEED` overrides it); a failure names it.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { MqttClient } from "mqtt";
import type postgres from "postgres";
import { nowUs } from "../src/clock.ts";
import { decodeOptions, decodeOptionsFrom } from "../src/cli/option_groups.ts";
import { decode } from "../src/core/decode.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import {
  type Decoded,
  type DecodedMessage,
  type Inbound,
  REJECT_REASONS,
  type RejectReason,
  SKIP_REASONS,
} from "../src/core/message.ts";
import { floatArrayLiteral, intArrayLiteral, textArrayLiteral } from "../src/ingest/pg_array.ts";
import { type BatchResult, MAX_REJECT_DETAILS, processBatch } from "../src/ingest/processor.ts";
import { auditedProcess, openBooks } from "./support/audit.ts";
import { type Mosquitto, startMosquitto } from "./support/broker.ts";
import { withTestDatabase } from "./support/db.ts";
import {
  assertProperty,
  type Fleet,
  materialize,
  type Materialized,
  message,
  type MessageDesc,
  PROPERTY_SEED,
  publishableTopic,
  validForm,
  type ValidMessage,
  validMessage,
} from "./support/poison.ts";
import {
  connectClient,
  endClient,
  HAVE_MOSQUITTO,
  prefixedTopicArgs,
  publish,
  type ServeProcess,
  spawnServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";

/** serve's defaults (every option of `decodeOptions` unset), built the way serve builds them. */
const DECODE = decodeOptionsFrom(
  Object.fromEntries(
    Object.entries(decodeOptions).map(([name, o]) => [name, o.schema.parse(undefined)]),
  ) as Parameters<typeof decodeOptionsFrom>[0],
);

const MIN_TS_US = Date.UTC(2000, 0, 1) * 1000;
const UUID_LOWER = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// deno-lint-ignore no-control-regex
const NUL_OR_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const REASONS = new Set<string>(REJECT_REASONS);
const SKIPS = new Set<string>(SKIP_REASONS);

function inboundOf(m: Materialized): Inbound {
  return { ...m, receivedAtUs: nowUs() };
}

/** What is wrong with a decode answer, or null. */
function decodeProblem(inbound: Inbound, d: Decoded): string | null {
  const latestUs = inbound.receivedAtUs + DECODE.maxFutureSkewMs * 1000;
  const badTs = (ts: number | null) =>
    ts !== null && !(Number.isSafeInteger(ts) && ts >= MIN_TS_US && ts <= latestUs);
  switch (d?.kind) {
    case "reject":
      if (!REASONS.has(d.reason)) return `unknown reject reason ${String(d.reason)}`;
      // internal_error is decode failing on the message (issue 20): never right.
      if (d.reason === "internal_error") return `internal_error: ${d.detail}`;
      return typeof d.detail === "string" ? null : "reject without a detail";
    case "skip":
      return SKIPS.has(d.reason) ? null : `unknown skip reason ${String(d.reason)}`;
    case "status":
      if (d.status !== "online" && d.status !== "offline") return `status ${String(d.status)}`;
      if (!UUID_LOWER.test(d.userId)) return `user id ${d.userId} is not a lower-case UUID`;
      return badTs(d.tsUs) ? `status time ${d.tsUs} outside [2000, now + skew]` : null;
    case "readings": {
      if (!UUID_LOWER.test(d.userId)) return `user id ${d.userId} is not a lower-case UUID`;
      if (d.readings.length + d.rejects.length === 0) return "readings without readings or rejects";
      for (const r of d.rejects) {
        if (!REASONS.has(r.reason)) return `unknown reading reject reason ${String(r.reason)}`;
        if (r.reason === "internal_error") return `internal_error: ${r.detail}`;
      }
      for (const r of d.readings) {
        if (badTs(r.tsUs)) return `reading time ${r.tsUs} outside [2000, now + skew]`;
        if ((r.value === null) === (r.text === null)) return "reading needs a value xor a text";
        if (r.value !== null && !Number.isFinite(r.value)) return `value ${r.value}`;
        if (r.text !== null && (r.text === "" || NUL_OR_CONTROL.test(r.text))) {
          return `text value ${JSON.stringify(r.text)}`;
        }
      }
      return null;
    }
    default:
      return `unknown kind ${String((d as { kind?: unknown })?.kind)}`;
  }
}

/** decode, turning a throw into a failure that shows the message. */
function decodeOrFail(inbound: Inbound, desc: unknown): Decoded {
  let d: Decoded;
  try {
    d = decode(inbound, DECODE);
  } catch (error) {
    throw new Error(`decode() threw ${String(error)} on ${fc.stringify(desc)}`);
  }
  const problem = decodeProblem(inbound, d);
  if (problem) {
    throw new Error(`decode() answered badly (${problem}) on ${fc.stringify(desc)}`);
  }
  return d;
}

// --------------------------------------------------------------------------------------
// Property 1

const DECODE_RUNS = 10_000;

Deno.test("property: decode() never throws and answers every hostile message with a known outcome", async () => {
  const fleet: Fleet = { user: crypto.randomUUID() };
  const started = performance.now();
  await assertProperty(
    fc.property(message, (m) => {
      decodeOrFail(inboundOf(materialize(m, fleet)), m);
    }),
    { numRuns: DECODE_RUNS },
  );
  console.log(
    `decode property: ${DECODE_RUNS} messages, seed ${PROPERTY_SEED}, ` +
      `${Math.round(performance.now() - started)} ms`,
  );
});

// --------------------------------------------------------------------------------------
// Property 2

const BATCHES = 100;
const HOSTILE_PER_BATCH = 70;
const VALID_PER_BATCH = 30;

interface FeedRow {
  id: number;
  active: boolean;
  min: number | null;
  max: number | null;
}

/** One registered user with device d1 and feeds temp (any value), hum (0..100), off (inactive). */
async function registerFleet(
  sql: postgres.Sql,
): Promise<{ fleet: Fleet; feeds: Map<string, FeedRow> }> {
  const user = crypto.randomUUID();
  await sql`insert into users (id) values (${user})`;
  await sql`insert into devices (user_id, code) values (${user}, 'd1')`;
  const device = sql`(select id from devices where user_id = ${user} and code = 'd1')`;
  await sql`insert into feeds (user_id, key, device_id) values (${user}, 'temp', ${device})`;
  await sql`insert into feeds (user_id, key, device_id, threshold_min, threshold_max)
    values (${user}, 'hum', ${device}, 0, 100)`;
  await sql`insert into feeds (user_id, key, device_id, is_active)
    values (${user}, 'off', ${device}, false)`;
  const rows = await sql`
    select key, id, is_active, threshold_min, threshold_max from feeds where user_id = ${user}`;
  const feeds = new Map<string, FeedRow>(rows.map((r) => [r.key, {
    id: Number(r.id),
    active: r.is_active,
    min: r.threshold_min,
    max: r.threshold_max,
  }]));
  return { fleet: { user }, feeds };
}

/**
 * Which of `keys` ((feed id, µs) pairs) have a row in feed_values with their value: a key
 * that holds another value is a conflict, not stored (issue 20).
 */
async function existingReadings(
  sql: postgres.Sql,
  keys: { feedId: number; us: number; value: number | null; text: string | null }[],
): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await sql`
    select x.f::text || ':' || x.c::text as k
    from unnest(${intArrayLiteral(keys.map((k) => k.feedId))}::int8[],
                ${intArrayLiteral(keys.map((k) => k.us))}::int8[],
                ${floatArrayLiteral(keys.map((k) => k.value))}::float8[],
                ${textArrayLiteral(keys.map((k) => k.text))}::text[]) as x(f, c, v, t)
    where exists (select 1 from feed_values v
                  where v.feed_id = x.f and v.created_at = to_timestamp(0) + x.c * interval '1 microsecond'
                    and v.value is not distinct from x.v and v.value_text is not distinct from x.t)`;
  return new Set(rows.map((r) => r.k as string));
}

/** Which of `received` (µs) have a row in ingest_rejects. */
async function rejectedReceiveTimes(sql: postgres.Sql, received: number[]): Promise<Set<number>> {
  const rows = await sql`
    select x.r from unnest(${intArrayLiteral(received)}::int8[]) as x(r)
    where exists (select 1 from ingest_rejects j
                  where j.received_at = to_timestamp(0) + x.r * interval '1 microsecond')`;
  return new Set(rows.map((r) => Number(r.r)));
}

/** The valid messages of `valid` that left no (or a different) row. */
async function missingValid(
  sql: postgres.Sql,
  feeds: Map<string, FeedRow>,
  valid: ValidMessage[],
): Promise<ValidMessage[]> {
  const readings = valid.flatMap((v, i) => v.readings.map((r) => ({ ...r, i })));
  const statuses = valid.flatMap((v, i) => v.status ? [{ ...v.status, i }] : []);
  const found = new Set<number>();
  if (readings.length > 0) {
    const rows = await sql`
      select x.i from unnest(${intArrayLiteral(readings.map((r) => feeds.get(r.feed)!.id))}::int8[],
                             ${intArrayLiteral(readings.map((r) => r.tsUs))}::int8[],
                             ${floatArrayLiteral(readings.map((r) => r.value))}::float8[],
                             ${intArrayLiteral(readings.map((_, k) => k))}::int8[]) as x(f, c, v, i)
      join feed_values fv on fv.feed_id = x.f
        and fv.created_at = to_timestamp(0) + x.c * interval '1 microsecond' and fv.value = x.v`;
    for (const r of rows) found.add(Number(r.i));
  }
  const okReading = new Set<number>(); // messages with a missing reading are collected below
  const missing = new Set<number>();
  readings.forEach((r, k) => found.has(k) ? okReading.add(r.i) : missing.add(r.i));
  if (statuses.length > 0) {
    const rows = await sql`
      select x.i from unnest(${intArrayLiteral(statuses.map((s) => s.atUs))}::int8[],
                             ${textArrayLiteral(statuses.map((s) => s.status))}::text[],
                             ${intArrayLiteral(statuses.map((s) => s.i))}::int8[]) as x(a, s, i)
      join device_status_events e on e.at = to_timestamp(0) + x.a * interval '1 microsecond'
        and e.status = x.s`;
    const seen = new Set(rows.map((r) => Number(r.i)));
    for (const s of statuses) if (!seen.has(s.i)) missing.add(s.i);
  }
  return [...missing].map((i) => valid[i]);
}

type Entry = { pending: DecodedMessage; desc: unknown; valid: ValidMessage | null };

/** A failed batch: which messages fail alone (dry runs, nothing is kept)? */
async function culprits(sql: postgres.Sql, entries: Entry[]): Promise<string[]> {
  const out: string[] = [];
  for (const e of entries) {
    try {
      await processBatch(sql, [e.pending], { dryRun: true });
    } catch (error) {
      out.push(`${fc.stringify(e.desc)} -> ${String(error).slice(0, 300)}`);
      if (out.length >= 5) break;
    }
  }
  return out;
}

/**
 * The outcome of each message as the database shows it: stored when one of its readings
 * that the registered feeds accept has a row with its value (its own, or an equal one it
 * was absorbed by; another value under its key is a conflict, rejected), or when it is a status of the registered device (not an old retained one without
 * a time); else rejected when it has an ingest_rejects row; else skipped.
 */
async function outcomesFromDatabase(
  sql: postgres.Sql,
  fleet: Fleet,
  feeds: Map<string, FeedRow>,
  batch: DecodedMessage[],
): Promise<{ stored: number; rejected: number; skipped: number; rejectedSet: Set<number> }> {
  const candidates: {
    feedId: number;
    us: number;
    value: number | null;
    text: string | null;
    message: number;
  }[] = [];
  const storedStatus = new Set<number>();
  batch.forEach(({ inbound, decoded: d }, i) => {
    if (d.kind === "status") {
      const retainedOld = inbound.retain && d.tsUs === null;
      if (d.userId === fleet.user && d.deviceCode === "d1" && !retainedOld) storedStatus.add(i);
      return;
    }
    if (d.kind !== "readings" || d.userId !== fleet.user) return;
    for (const r of d.readings) {
      const feed = feeds.get(r.feedKey);
      if (!feed || !feed.active) continue;
      if (inbound.retain && r.tsUs === null) continue;
      if (
        r.value !== null &&
        ((feed.min !== null && r.value < feed.min) || (feed.max !== null && r.value > feed.max))
      ) continue;
      candidates.push({
        feedId: feed.id,
        us: r.tsUs ?? inbound.receivedAtUs + (r.receiveOffsetUs ?? 0),
        value: r.value,
        text: r.text,
        message: i,
      });
    }
  });
  const existing = await existingReadings(sql, candidates);
  const storedReadings = new Set(
    candidates.filter((c) => existing.has(`${c.feedId}:${c.us}`)).map((c) => c.message),
  );
  const rejectedSet = await rejectedReceiveTimes(sql, batch.map((p) => p.inbound.receivedAtUs));
  const counts = { stored: 0, rejected: 0, skipped: 0, rejectedSet };
  batch.forEach(({ inbound }, i) => {
    if (storedStatus.has(i) || storedReadings.has(i)) counts.stored++;
    else if (rejectedSet.has(inbound.receivedAtUs)) counts.rejected++;
    else counts.skipped++;
  });
  return counts;
}

function describeBatch(entries: Entry[], result: BatchResult): string {
  const lines = entries.filter((e) => !e.valid).map((e) => {
    const d = e.pending.decoded;
    const what = d.kind === "reject" ? `reject ${d.reason}` : d.kind;
    return `  ${what}: ${fc.stringify(e.desc).slice(0, 300)}`;
  });
  return `result ${
    JSON.stringify({
      outcomes: result.outcomes,
      rejected: result.rejected,
      skipped: result.skipped,
    })
  }\n` +
    lines.join("\n");
}

Deno.test("property: processBatch() commits every batch of hostile and valid messages and accounts for each once", async () => {
  await withTestDatabase(async (sql) => {
    const { fleet, feeds } = await registerFleet(sql);
    const cache = new FeedCache({ ttlMs: 30_000 });
    let validCount = 0;
    let messages = 0;
    const started = performance.now();
    await assertProperty(
      fc.asyncProperty(
        fc.array(message, { minLength: HOSTILE_PER_BATCH, maxLength: HOSTILE_PER_BATCH }),
        fc.array(validForm, { minLength: VALID_PER_BATCH, maxLength: VALID_PER_BATCH }),
        async (hostile, forms) => {
          // Three valid messages in every ten, between the hostile ones.
          const entries: Entry[] = [];
          let h = 0, v = 0;
          for (let k = 0; k < HOSTILE_PER_BATCH + VALID_PER_BATCH; k++) {
            if (k % 10 === 2 || k % 10 === 5 || k % 10 === 8) {
              const valid = validMessage(validCount++, forms[v], fleet);
              const inbound = inboundOf(valid);
              entries.push({
                pending: { inbound, decoded: decodeOrFail(inbound, forms[v]) },
                desc: { valid: forms[v++] },
                valid,
              });
            } else {
              const desc = hostile[h++];
              const inbound = inboundOf(materialize(desc, fleet));
              entries.push({
                pending: { inbound, decoded: decodeOrFail(inbound, desc) },
                desc,
                valid: null,
              });
            }
          }
          const batch = entries.map((e) => e.pending);
          messages += batch.length;

          let result: BatchResult;
          try {
            result = await processBatch(sql, batch, { feedCache: cache });
          } catch (error) {
            const alone = await culprits(sql, entries);
            throw new Error(
              `processBatch() threw (the batch would never commit): ${String(error)}\n` +
                `messages that fail alone:\n  ${alone.join("\n  ") || "(none)"}`,
            );
          }

          const { outcomes } = result;
          assert.equal(result.messages, batch.length);
          assert.equal(
            outcomes.stored + outcomes.rejected + outcomes.skipped,
            batch.length,
            `every message accounted for once: ${JSON.stringify(outcomes)}`,
          );

          const valid = entries.flatMap((e) => e.valid ? [e.valid] : []);
          const missing = await missingValid(sql, feeds, valid);
          assert.deepEqual(
            missing.map((m) => `${m.topic} ${new TextDecoder().decode(m.payload)}`),
            [],
            "every valid message is stored",
          );

          const db = await outcomesFromDatabase(sql, fleet, feeds, batch);
          assert.deepEqual(
            { stored: db.stored, rejected: db.rejected, skipped: db.skipped },
            outcomes,
            `outcomes agree with the rows in the database\n${describeBatch(entries, result)}`,
          );
          for (const e of entries) {
            const d = e.pending.decoded;
            if (d.kind === "reject") {
              assert.ok(
                db.rejectedSet.has(e.pending.inbound.receivedAtUs),
                `a ${d.reason} reject has its ingest_rejects row: ${fc.stringify(e.desc)}`,
              );
            }
          }
          if (result.rejects.length < MAX_REJECT_DETAILS) {
            assert.deepEqual(
              [...new Set(result.rejects.map((r) => r.receivedAtUs))].sort(),
              [...db.rejectedSet].sort(),
              "the messages the batch reports rejected are those with ingest_rejects rows",
            );
          }
          const reported = Object.entries(result.rejected) as [RejectReason, number][];
          assert.ok(reported.every(([reason]) => REASONS.has(reason)), JSON.stringify(reported));
        },
      ),
      { numRuns: BATCHES, endOnFailure: true },
    );
    assert.ok(messages >= 10_000, `${messages} messages through processBatch`);
    console.log(
      `processBatch property: ${BATCHES} batches, ${messages} messages, seed ${PROPERTY_SEED}, ` +
        `${Math.round(performance.now() - started)} ms`,
    );
  });
});

// --------------------------------------------------------------------------------------
// Property 3

const SERVE_HOSTILE = 200;
const SERVE_VALID = 60;

/** A broker for the serve property: a private Mosquitto, else TEST_MQTT_URL, else none. */
const SERVE_BROKER = HAVE_MOSQUITTO ? "private" : Deno.env.get("TEST_MQTT_URL") ? "shared" : null;
if (!SERVE_BROKER) {
  console.warn(
    "poison_property_test: no /usr/sbin/mosquitto and no TEST_MQTT_URL; the serve property is skipped",
  );
}

/** Publishes at QoS 1; fails naming the message when the broker does not acknowledge it. */
async function publishOrFail(pub: MqttClient, m: Materialized): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const what = () =>
    `topic of ${new TextEncoder().encode(m.topic).length} bytes ${
      JSON.stringify(m.topic.slice(0, 80))
    }, payload of ${m.payload.length} bytes`;
  try {
    await Promise.race([
      publish(pub, m.topic, m.payload, { qos: 1, retain: m.retain }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no PUBACK within 10 s")), 10_000);
      }),
    ]);
  } catch (error) {
    throw new Error(`publishing ${what()} failed: ${String(error)}`);
  } finally {
    clearTimeout(timer);
  }
}

async function readyz(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  await res.body?.cancel();
  return res.status;
}

Deno.test({
  name:
    "property: serve fed hostile QoS 1 traffic through Mosquitto and restarted halfway stays up and stores every valid message",
  ignore: SERVE_BROKER === null,
  async fn() {
    await withTestDatabase(async (sql, dbUrl) => {
      const { fleet, feeds } = await registerFleet(sql);
      let mosquitto: Mosquitto | null = null;
      if (SERVE_BROKER === "private") mosquitto = await startMosquitto({ persistence: true });
      const mqttUrl = mosquitto?.url ?? Deno.env.get("TEST_MQTT_URL")!;
      const prefix = uniquePrefix();
      const args = [
        "--http",
        "127.0.0.1:0",
        "--client-id",
        `feedline-prop-${prefix}`,
        "--batch-interval-ms",
        "50",
        "--session-expiry",
        "300",
        "--shutdown-timeout-ms",
        "5000",
        ...prefixedTopicArgs(prefix),
      ];
      const env = { DATABASE_URL: dbUrl, MQTT_URL: mqttUrl };
      const exits: string[] = [];
      const spawn = (name: string): ServeProcess => {
        const p = spawnServe(args, env);
        p.child.status.then((s) => exits.push(`${name} exited with ${s.code}`));
        return p;
      };
      const pub = await connectClient(mqttUrl, 5);
      // The serve running now, for the clean-up.
      const running: { serve: ServeProcess | null } = { serve: null };
      try {
        await assertProperty(
          fc.asyncProperty(
            fc.array(message, { minLength: SERVE_HOSTILE, maxLength: SERVE_HOSTILE }),
            fc.array(validForm, { minLength: SERVE_VALID, maxLength: SERVE_VALID }),
            async (hostile, forms) => {
              const started = performance.now();
              // Hostile messages under serve's prefix, made publishable; valid ones between.
              const traffic: { m: Materialized; valid: ValidMessage | null }[] = [];
              const perValid = Math.floor(SERVE_HOSTILE / SERVE_VALID);
              let v = 0;
              hostile.forEach((desc: MessageDesc, i) => {
                const m = materialize(desc, fleet);
                m.topic = publishableTopic(`${prefix}/${m.topic}`);
                traffic.push({ m, valid: null });
                if (i % perValid === perValid - 1 && v < SERVE_VALID) {
                  const valid = validMessage(v, forms[v], fleet);
                  v++;
                  traffic.push({ m: { ...valid, topic: `${prefix}/${valid.topic}` }, valid });
                }
              });
              const valid = traffic.flatMap((t) => t.valid ? [t.valid] : []);
              const send = async (from: number, to: number) => {
                for (const { m } of traffic.slice(from, to)) {
                  await publishOrFail(pub, m);
                }
              };
              const half = Math.floor(traffic.length / 2);
              const threeQuarters = Math.floor(traffic.length * 0.75);

              /** Waits until `expected` are stored; fails with what serve logged beyond info. */
              const allStored = async (expected: ValidMessage[], serve: ServeProcess) => {
                let missing: ValidMessage[] = expected;
                await waitFor(
                  "the valid messages to be stored",
                  async () => (missing = await missingValid(sql, feeds, expected)).length === 0,
                  20_000,
                ).catch((error) => {
                  throw new Error(
                    `${error.message}: ${missing.length} of ${expected.length} missing, e.g. ` +
                      `${missing.slice(0, 3).map((m) => m.topic).join(", ")}; serve logged: ${
                        JSON.stringify(serve.logs.filter((l) => l.level !== "info").slice(0, 3))
                          .slice(0, 2000)
                      }; exits: ${exits.join(", ") || "none"}`,
                  );
                });
              };

              const books = await openBooks(dbUrl);
              const first = running.serve = spawn("the first serve");
              await first.waitForLog("subscribed");
              await send(0, half);
              await allStored(
                traffic.slice(0, half).flatMap((t) => t.valid ? [t.valid] : []),
                first,
              );
              assert.deepEqual(exits, [], "serve must not exit on its own");
              // Stop it halfway, possibly with hostile messages of the first half in flight.
              const code = await first.signal("SIGTERM");
              running.serve = null;
              assert.equal(code, 0, "the first serve stops cleanly on SIGTERM");
              const stopped = first.logs.find((l) => l.msg === "stopped");
              assert.ok(stopped, "the first serve logs its accounting when it stops");
              const n = (k: string) => stopped[k] as number;
              assert.equal(
                n("received"),
                n("stored") + n("rejected") + n("skipped") + n("dropped") + n("discarded") +
                  n("queued") + n("inFlight"),
                `every message the first serve received is accounted for: ${
                  JSON.stringify(stopped)
                }`,
              );
              exits.length = 0;

              // Some while serve is down (the broker keeps them for its session), the rest after.
              await send(half, threeQuarters);
              const second = running.serve = spawn("the second serve");
              await second.waitForLog("subscribed");
              await send(threeQuarters, traffic.length);
              await allStored(valid, second);
              assert.deepEqual(exits, [], "serve must not exit on its own");
              const http = second.logs.find((l) => l.msg === "http listening");
              const port = Number(new URL(String(http?.status)).port);
              await waitFor("readyz 200", async () => await readyz(port) === 200, 10_000);
              assert.deepEqual(exits, [], "serve is still running at the end");
              console.log(
                `serve property: ${traffic.length} messages (${valid.length} valid), one restart, ` +
                  `seed ${PROPERTY_SEED}, ${Math.round(performance.now() - started)} ms`,
              );
              assert.equal(await second.signal("SIGTERM"), 0, "the second serve stops cleanly");
              running.serve = null;
              await books.verify([
                auditedProcess(first, "the first serve"),
                auditedProcess(second, "the second serve"),
              ]);
            },
          ),
          { numRuns: 1, endOnFailure: true },
        );
      } finally {
        await endClient(pub, true);
        await running.serve?.signal("SIGTERM");
        await mosquitto?.close();
      }
    });
  },
});
