import assert from "node:assert/strict";
import { createLogger, expandSecrets, redactText, secretsOfUrl } from "./log.ts";
import { createFloodLog } from "./log_flood.ts";

Deno.test("redactText() masks URL passwords, token-like query values and given secrets", () => {
  assert.equal(
    redactText("connect mqtt://u:p%40ss@host:1883/?token=abc&x=1 failed"),
    "connect mqtt://u:***@host:1883/?token=***&x=1 failed",
  );
  assert.equal(
    redactText('{"url":"postgres://root:pw@db/x?api_key=k"}'),
    '{"url":"postgres://root:***@db/x?api_key=***"}',
  );
  assert.equal(
    redactText("auth failed for hunter22", expandSecrets(["hunter22"])),
    "auth failed for ***",
  );
});

Deno.test("expandSecrets() also catches the percent-decoded and JSON-escaped spellings", () => {
  const secrets = expandSecrets(secretsOfUrl("mqtt://u:p%40ss%22w@h/?secret=s3cr3t"));
  assert.equal(
    redactText('password p@ss"w and "p@ss\\"w" and s3cr3t', secrets),
    'password *** and "***" and ***',
  );
  assert.deepEqual(expandSecrets(["ab", undefined, ""]), []);
});

Deno.test("createLogger() masks its secrets in JSON lines", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", write: (l) => lines.push(l), secrets: ["topsecret"] });
  log.warn("broker said topsecret", { error: "bad password topsecret" });
  assert.equal(lines.length, 1);
  const record = JSON.parse(lines[0]);
  assert.equal(record.msg, "broker said ***");
  assert.equal(record.error, "bad password ***");
});

Deno.test("createFloodLog() writes the first event at once and the rest as one count", () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) });
  const flood = createFloodLog(log, 60_000);
  for (let i = 0; i < 100; i++) flood.note("reject:bad_payload", "messages rejected", { i });
  flood.note("reject:too_large", "messages rejected", { i: -1 }, 5);
  assert.equal(lines.length, 2);
  flood.close();
  assert.equal(lines.length, 3);
  assert.deepEqual(lines.map((l) => [l.key, l.count]), [
    ["reject:bad_payload", 1],
    ["reject:too_large", 5],
    ["reject:bad_payload", 99],
  ]);
  assert.equal(lines[2].i, 99, "the latest example is kept");
});

Deno.test("text lines start with the date and time (UTC), then level and message", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "text", write: (l) => lines.push(l) });
  log.warn("disk low", { free: 3 });
  assert.match(lines[0], /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} WARN disk low free=3$/);
});
