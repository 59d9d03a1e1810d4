/**
 * `serve --capture FILE`: appends received messages to FILE in the capture format
 * (capture_format.ts), for `replay`.
 *
 * What the capture holds, precisely: each message once, when its fate is settled.
 * - A message that reached a batch is written when that batch has committed, before its
 *   acknowledgement is sent, whatever became of it (stored, skipped or rejected).
 * - A QoS 0 message dropped because its queue was full is written too, marked
 *   `"dropped":"queue_full"`: it was received, and replaying the capture once the
 *   database is healthy again recovers it.
 * - Nothing else: a QoS 1/2 message not yet committed (queued, in a failing batch, left
 *   unacknowledged at shutdown, or a queued copy discarded because the broker redelivers
 *   it) is not in the file, since the broker delivers it again and it is written then.
 *   So the capture never claims more than was received, and never holds a message twice.
 *   QoS 0 messages still unwritten when a shutdown times out are counted as
 *   `dropped{reason="shutdown"}` and are not in the capture.
 *
 * Writes go to the operating system at every commit (no fsync): a crash of the process
 * loses nothing that was acknowledged, a power loss may lose the tail. With `maxBytes`,
 * a file that reaches the size is renamed FILE.1, FILE.2, … (the first free number) and
 * a new FILE is started.
 */
import { FeedlineError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Inbound } from "../core/message.ts";
import { encodeCaptureLine } from "./format.ts";

/** Options of {@linkcode CaptureWriter.open}. */
export interface CaptureWriterOptions {
  path: string;
  /** Rotate when the file reaches this size; 0: never. */
  maxBytes: number;
  log: Logger;
}

const encoder = new TextEncoder();

/** Appends messages to a capture file. */
export class CaptureWriter {
  readonly #opts: CaptureWriterOptions;
  #file: Deno.FsFile;
  #size: number;
  #nextRotation: number;
  #chain: Promise<void> = Promise.resolve();
  #dropped: string[] = [];
  #lastError = "";
  /** Lines written. */
  lines = 0;
  /** Failed writes. */
  errors = 0;

  private constructor(opts: CaptureWriterOptions, file: Deno.FsFile, size: number, next: number) {
    this.#opts = opts;
    this.#file = file;
    this.#size = size;
    this.#nextRotation = next;
  }

  /** Opens (appends to) the capture file. */
  static async open(opts: CaptureWriterOptions): Promise<CaptureWriter> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(opts.path, { create: true, append: true });
    } catch (error) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `cannot open capture file ${opts.path}: ${(error as Error).message}; check --capture`,
        { cause: error },
      );
    }
    const { size } = await file.stat();
    opts.log.info(`capturing to ${opts.path}`, {
      file: opts.path,
      rotateAtBytes: opts.maxBytes || null,
    });
    return new CaptureWriter(opts, file, size, await firstFreeRotation(opts.path));
  }

  /** Appends the messages of a committed batch, in receive order; resolves when written. */
  committed(messages: readonly Inbound[]): Promise<void> {
    const sorted = [...messages].sort((a, b) => a.receivedAtUs - b.receivedAtUs);
    const lines = sorted.map((m) => encodeCaptureLine(m));
    return this.#enqueue(lines);
  }

  /** A message dropped on a full queue: written soon, marked with the reason. */
  dropped(message: Inbound, reason = "queue_full"): void {
    this.#dropped.push(encodeCaptureLine(message, reason));
    // One write for a burst of drops.
    if (this.#dropped.length === 1) void this.#enqueue([]);
  }

  /** Writes what is pending and closes the file. */
  async close(): Promise<void> {
    await this.#enqueue([]);
    this.#file.close();
  }

  #enqueue(lines: string[]): Promise<void> {
    this.#chain = this.#chain.then(() => {
      if (this.#dropped.length > 0) {
        lines = [...this.#dropped, ...lines];
        this.#dropped = [];
      }
      return lines.length > 0 ? this.#write(lines) : undefined;
    });
    return this.#chain;
  }

  async #write(lines: string[]): Promise<void> {
    try {
      const bytes = encoder.encode(lines.join("\n") + "\n");
      let written = 0;
      while (written < bytes.byteLength) {
        written += await this.#file.write(bytes.subarray(written));
      }
      this.#size += bytes.byteLength;
      this.lines += lines.length;
      if (this.#opts.maxBytes > 0 && this.#size >= this.#opts.maxBytes) await this.#rotate();
    } catch (error) {
      this.errors++;
      const message = (error as Error).message;
      if (message !== this.#lastError) {
        this.#opts.log.error("capture write failed; the capture misses these messages", {
          file: this.#opts.path,
          messages: lines.length,
          error: message,
        });
      }
      this.#lastError = message;
    }
  }

  async #rotate(): Promise<void> {
    this.#file.close();
    const target = `${this.#opts.path}.${this.#nextRotation++}`;
    await Deno.rename(this.#opts.path, target);
    this.#file = await Deno.open(this.#opts.path, { create: true, append: true });
    this.#size = 0;
    this.#opts.log.info("capture file rotated", { file: target });
  }
}

/** The first N for which neither PATH.N nor a higher number exists. */
async function firstFreeRotation(path: string): Promise<number> {
  const slash = path.lastIndexOf("/");
  const dir = slash === -1 ? "." : path.slice(0, slash) || "/";
  const base = path.slice(slash + 1);
  let highest = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.startsWith(`${base}.`)) continue;
    const n = Number(entry.name.slice(base.length + 1));
    if (Number.isInteger(n) && n > highest) highest = n;
  }
  return highest + 1;
}
