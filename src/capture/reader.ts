/**
 * Reads capture files (plain or gzip), `mosquitto_sub -v` output and stdin as a stream of
 * messages, a chunk of lines at a time: memory stays constant whatever the file's size.
 *
 * Receive times: a line with a microsecond time keeps it exactly (the key its reading was
 * stored under). Times of lower precision may repeat, so they go through a
 * `MonotonicStamper` in file order: distinct readings never collide, and the same file
 * stamps the same way every time. Lines with no time at all (`mosquitto_sub -v`) get the
 * time they are read: replaying those is idempotent only for payloads with their own `ts`.
 * Either way a message whose readings take stamps after its own (`receiveOffsetOf`) keeps
 * the next line's time above them.
 */
import { MonotonicStamper, nowUs, reserveStampsThrough } from "../clock.ts";
import { FeedlineError } from "../errors.ts";
import { parseCaptureLine, parseMosquittoLine, sniffFormat } from "./format.ts";
import type { Inbound } from "../core/message.ts";

/** Input formats. */
export type InputFormat = "auto" | "capture" | "mosquitto";

/** A message read from a line. */
export interface ReadMessage {
  kind: "message";
  source: string;
  line: number;
  inbound: Inbound;
  /** serve received it but dropped it (`"queue_full"`): the capture says so. */
  dropped?: string;
}

/** A line that is not a message. */
export interface ReadBadLine {
  kind: "bad";
  source: string;
  line: number;
  error: string;
}

/** What the reader yields, in chunks. */
export type ReadItem = ReadMessage | ReadBadLine;

/** Options of {@linkcode readCaptures}. */
export interface ReadCapturesOptions {
  format: InputFormat;
  /** The stream `-` stands for (default: stdin). */
  stdin?: ReadableStream<Uint8Array>;
  /** Called with the size of each chunk of raw (possibly compressed) input read. */
  onBytes?: (n: number) => void;
  /**
   * How far after its receive time the last stamp of a message's readings lies
   * (src/core/decode.ts `lastReceiveOffsetUs`). For lines whose receive times are made
   * here, the next line's time is put above it, as serve's clock does; without it, 0.
   */
  receiveOffsetOf?: (inbound: Inbound) => number;
}

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;
const MAX_CHUNK_BYTES = 64 * 1024;

/** Shows `-` as stdin in messages. */
export function sourceName(source: string): string {
  return source === "-" ? "stdin" : source;
}

/**
 * Yields the messages and bad lines of `sources` (paths, `-` for stdin), in order, a
 * chunk at a time.
 */
export async function* readCaptures(
  sources: string[],
  opts: ReadCapturesOptions,
): AsyncGenerator<ReadItem[]> {
  for (const source of sources) {
    const stream = source === "-"
      ? (opts.stdin ?? Deno.stdin.readable)
      : (await Deno.open(source, { read: true })).readable;
    yield* readSource(sourceName(source), stream, opts);
  }
}

async function* readSource(
  name: string,
  stream: ReadableStream<Uint8Array>,
  opts: ReadCapturesOptions,
): AsyncGenerator<ReadItem[]> {
  const stamper = new MonotonicStamper();
  let format = opts.format === "auto" ? null : opts.format;
  let lineNo = 0;
  for await (const lines of splitLines(stream, opts.onBytes)) {
    const items: ReadItem[] = [];
    for (let raw of lines) {
      lineNo++;
      if (raw.endsWith("\r")) raw = raw.slice(0, -1);
      if (raw.trim() === "") continue;
      format ??= sniffFormat(raw);
      const parsed = format === "capture" ? parseCaptureLine(raw) : parseMosquittoLine(raw);
      if (!parsed.ok) {
        items.push({ kind: "bad", source: name, line: lineNo, error: parsed.error });
        continue;
      }
      const e = parsed.entry;
      const receivedAtUs = e.receivedAtUs === null
        ? nowUs()
        : e.exactTime
        ? e.receivedAtUs
        : stamper.stamp(e.receivedAtUs);
      const inbound: Inbound = e.receivedAtUs === null
        ? {
          topic: e.topic,
          payload: e.payload,
          qos: e.qos,
          retain: e.retain,
          receivedAtUs,
          timeless: true,
        }
        : { topic: e.topic, payload: e.payload, qos: e.qos, retain: e.retain, receivedAtUs };
      // An exact time was stamped by serve, whose clock kept the message's room already.
      const offset = e.exactTime ? 0 : opts.receiveOffsetOf?.(inbound) ?? 0;
      if (offset > 0) {
        if (e.receivedAtUs === null) reserveStampsThrough(receivedAtUs + offset);
        else stamper.reserveThrough(receivedAtUs + offset);
      }
      const message: ReadMessage = { kind: "message", source: name, line: lineNo, inbound };
      if (e.dropped) message.dropped = e.dropped; // for `trace`
      items.push(message);
    }
    if (items.length > 0) yield items;
  }
}

/** Splits a byte stream (gunzipped when it starts with the gzip magic) into lines. */
async function* splitLines(
  stream: ReadableStream<Uint8Array>,
  onBytes?: (n: number) => void,
): AsyncGenerator<string[]> {
  const reader = stream.getReader();
  const first = await reader.read();
  if (first.done) {
    reader.releaseLock();
    return;
  }
  onBytes?.(first.value.byteLength);
  const gzip = first.value[0] === GZIP_MAGIC_0 && first.value[1] === GZIP_MAGIC_1;
  const raw = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(first.value);
    },
    async pull(controller) {
      const next = await reader.read();
      if (next.done) {
        controller.close();
      } else {
        onBytes?.(next.value.byteLength);
        controller.enqueue(next.value);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  // Gunzipped chunks come out megabytes long; splitting them into pieces keeps the
  // strings and the batches of lines small (measured: reading a gzip file 3x faster).
  const bytes: ReadableStream<Uint8Array> = gzip
    ? raw.pipeThrough(new DecompressionStream("gzip") as TransformStream<Uint8Array, Uint8Array>)
      .pipeThrough(rechunk(MAX_CHUNK_BYTES))
    : raw;
  // The cast: with the DOM lib in the program (src/ops/status_page_script.ts), the DOM's
  // TextDecoderStream (writable side BufferSource) and Deno's disagree.
  const text = bytes.pipeThrough(new TextDecoderStream() as TransformStream<Uint8Array, string>);
  let rest = "";
  for await (const chunk of text) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    if (parts.length > 0) yield parts;
  }
  if (rest !== "") yield [rest];
}

/** Splits chunks longer than `max` bytes into views of at most `max` (no copy). */
function rechunk(max: number): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, controller) {
      for (let i = 0; i < chunk.byteLength; i += max) {
        controller.enqueue(chunk.subarray(i, i + max));
      }
    },
  });
}

/** Checks that every file can be read before anything is written; returns their size. */
export async function statInputs(files: string[]): Promise<number> {
  let total = 0;
  for (const file of files) {
    if (file === "-") continue;
    try {
      const info = await Deno.stat(file);
      if (!info.isFile) throw new Error("not a file");
      total += info.size;
    } catch (error) {
      throw new FeedlineError(
        "BAD_INPUT",
        `cannot read ${sourceName(file)}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  return total;
}
