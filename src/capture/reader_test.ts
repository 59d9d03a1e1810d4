import assert from "node:assert/strict";
import { readCaptures, type ReadCapturesOptions, type ReadItem } from "./reader.ts";
import { decode, lastReceiveOffsetUs } from "../core/decode.ts";
import { compileTopics } from "../core/topics.ts";

async function readAll(
  files: string[],
  stdin?: ReadableStream<Uint8Array>,
  more: Partial<ReadCapturesOptions> = {},
): Promise<ReadItem[]> {
  const items: ReadItem[] = [];
  for await (const chunk of readCaptures(files, { format: "auto", stdin, ...more })) {
    items.push(...chunk);
  }
  return items;
}

function times(items: ReadItem[]): number[] {
  return items.flatMap((i) => i.kind === "message" ? [i.inbound.receivedAtUs] : []);
}

Deno.test("millisecond receive times that repeat are made distinct, the same way every read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/ms.jsonl`;
    const line = (ms: string) =>
      `{"topic":"a/b/feeds/c","payload":"1","received_at":"2026-01-01T00:00:00.${ms}Z"}`;
    await Deno.writeTextFile(file, [line("001"), line("001"), line("001"), line("002")].join("\n"));
    const first = times(await readAll([file]));
    assert.deepEqual(first, [
      1767225600001000,
      1767225600001001,
      1767225600001002,
      1767225600002000,
    ]);
    assert.deepEqual(times(await readAll([file])), first);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("microsecond receive times are kept as they are, even out of order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/us.jsonl`;
    const line = (us: string) =>
      `{"topic":"a/b/feeds/c","payload":"1","received_at":"2026-01-01T00:00:00.${us}Z"}`;
    await Deno.writeTextFile(file, [line("000009"), line("000003"), line("000003")].join("\n"));
    assert.deepEqual(times(await readAll([file])), [
      1767225600000009,
      1767225600000003,
      1767225600000003,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a gzip file, CRLF line ends and blank lines read like a plain file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = 'a/b/feeds/c 1\r\n\r\n{"x": 1} ignored\r\na/b/feeds/c 2 3\r\n';
    const gz = await new Response(
      new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer();
    await Deno.writeFile(`${dir}/m.txt.gz`, new Uint8Array(gz));
    const items = await readAll([`${dir}/m.txt.gz`]);
    const summary = items.map((i) =>
      i.kind === "message"
        ? `${i.line} ${i.inbound.topic} ${new TextDecoder().decode(i.inbound.payload)}`
        : `${i.line} bad`
    );
    // The format is taken from the first line: mosquitto_sub -v, so the JSON-looking
    // third line is a topic `{"x":` — not a wildcard, so a message.
    assert.deepEqual(summary, ["1 a/b/feeds/c 1", '3 {"x": 1} ignored', "4 a/b/feeds/c 2 3"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("- reads the given stdin stream, with line numbers per source", async () => {
  const stdin = new Blob(['{"topic":"a/b","payload":"1"}\n{oops\n']).stream();
  const items = await readAll(["-"], stdin);
  assert.equal(items.length, 2);
  assert.equal(items[0].kind, "message");
  assert.deepEqual([items[1].kind, items[1].source, items[1].line], ["bad", "stdin", 2]);
});

Deno.test("a line whose readings take stamps after its own keeps the next made-up time above them", async () => {
  const U = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
  const opts = {
    router: compileTopics(),
    maxPayloadBytes: 65536,
    maxTextLength: 255,
    maxFutureSkewMs: 0,
  };
  const receiveOffsetOf: ReadCapturesOptions["receiveOffsetOf"] = (m) =>
    lastReceiveOffsetUs(decode(m, opts));
  // Three untimed readings of f0 in one message: stamped at +0, +16 and +32 µs.
  const bulk = JSON.stringify([{ feed: "f0", value: 11 }, { feed: "f0", value: 12 }, {
    feed: "f0",
    value: 13,
  }]);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/ms.jsonl`;
    const line = (topic: string, payload: string) =>
      JSON.stringify({ topic, payload, received_at: "2026-01-01T00:00:00.001Z" });
    await Deno.writeTextFile(
      file,
      [line(`${U}/d1/feeds`, bulk), line(`${U}/d1/feeds/f0`, "1"), line(`${U}/d1/feeds/f0`, "2")]
        .join("\n"),
    );
    assert.deepEqual(times(await readAll([file], undefined, { receiveOffsetOf })), [
      1767225600001000,
      1767225600001033,
      1767225600001034,
    ]);
    // Lines without a time (mosquitto_sub -v) are stamped by the receive clock.
    const text = `${U}/d1/feeds ${bulk}\n${U}/d1/feeds/f0 1\n`;
    const stdin = new Blob([text]).stream();
    const [a, b] = times(await readAll(["-"], stdin, { receiveOffsetOf }));
    assert.ok(b > a + 32, `${b} above ${a} + 32`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
