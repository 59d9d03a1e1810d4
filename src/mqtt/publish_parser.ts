/**
 * A faster parser for MQTT.js's incoming packets: it reads a PUBLISH straight from the
 * socket's chunk and hands every other packet to mqtt-packet's own parser, so MQTT.js
 * gets the same packet objects as before, in the same order, with less work per message.
 *
 * Why (docs/performance.md, "serve CPU, round 3"): mqtt-packet parses each PUBLISH in
 * four states over a buffer list, calling `debug` a dozen times (each call allocating
 * its arguments even when disabled) and slicing a new Buffer object for every byte range
 * it consumes: at ~40,000 messages a second that was over a third of serve's allocations
 * and a sixth of its receive CPU.
 *
 * What is read here: a PUBLISH whose QoS is 0-2 and whose topic, packet id and (MQTT 5)
 * empty property length lie within the packet. Its packet is built as mqtt-packet builds
 * it: an instance of its own `Packet` class, the same fields in the same order, the topic
 * decoded as UTF-8 by Buffer, the payload a view of the received bytes (a copy only when
 * the packet spans chunks, as mqtt-packet's buffer list does). Everything else goes to
 * mqtt-packet's parser, whole packet by whole packet (so its state is clean after each):
 * a PUBLISH with properties, and any other packet type. Bytes that are not a packet
 * (header flags or a length mqtt-packet refuses) and anything after a packet its parser
 * refused go to that parser as they are, from then on for the rest of the connection, so
 * errors come out of it as before.
 *
 * An oversized PUBLISH (settings `oversize`: a payload over `above` bytes, which serve
 * rejects as too_large whatever it holds) is not gathered whole: its head is kept (the
 * variable header and the first `keep` payload bytes, what the reject row stores) and the
 * rest hashed as it streams by, so a 1 MB payload costs serve a kilobyte, not two copies of
 * a megabyte waiting for the collector (docs/performance.md, "Memory budget"). Its packet
 * carries the head as `payload`, and `payloadSize` and `payloadDigest` (SHA-256, hex) of the
 * whole payload: a redelivered copy is recognised by them (src/mqtt/held_copies.ts).
 */
import mqttPacket from "mqtt-packet";
import { createHash, type Hash } from "node:crypto";
import { EventEmitter } from "node:events";
import { Buffer } from "node:buffer";

/** mqtt-packet's parser: parse() emits `packet` and `error`. */
interface PacketParser extends EventEmitter {
  parse(buf: Buffer): number;
  packet: object;
}

/** A PUBLISH whose payload is over `above` bytes keeps only `keep` of them. */
export interface OversizeSettings {
  above: number;
  keep: number;
}

/** What an oversized PUBLISH's packet carries besides mqtt-packet's fields. */
export interface OversizedPacket {
  /** The whole payload's size; the packet's `payload` is its head. */
  payloadSize?: number;
  /** The whole payload's SHA-256, hex. */
  payloadDigest?: string;
}

/** The settings MQTT.js passes (its client options, where serve adds `oversize`). */
interface ParserSettings {
  protocolVersion?: number;
  oversize?: OversizeSettings;
}

/** An oversized PUBLISH being read: its head kept, its payload hashed. */
interface Oversized {
  /** Bytes of the whole packet, and of it still to come. */
  total: number;
  left: number;
  /** Where the payload starts in the packet. */
  payloadStart: number;
  /** The packet's first `want` bytes (copies: the chunks they came in can go). */
  head: Buffer[];
  headBytes: number;
  want: number;
  hash: Hash;
}

type ParserFactory = (settings?: ParserSettings) => PacketParser;

const original = (mqttPacket as unknown as { parser: ParserFactory }).parser;

/**
 * The flag bits each packet type must carry (MQTT 3.1.1 §2.2.2, MQTT 5 §2.1.3); -1: any
 * (PUBLISH: DUP, QoS, RETAIN); undefined: type 0, reserved.
 */
const REQUIRED_FLAGS: (number | undefined)[] = [
  undefined, // reserved
  0, // connect
  0, // connack
  -1, // publish
  0, // puback
  0, // pubrec
  2, // pubrel
  0, // pubcomp
  2, // subscribe
  0, // suback
  2, // unsubscribe
  0, // unsuback
  0, // pingreq
  0, // pingresp
  0, // disconnect
  0, // auth
];

const PUBLISH = 3;
/** `#payloadStart`: the variable header goes on past the bytes at hand; or cannot be read. */
const NEED_MORE = -1;
const MALFORMED = -2;

/** Does mqtt-packet's parser accept this first byte? (It errors at once on the others.) */
function headerAccepted(first: number): boolean {
  const required = REQUIRED_FLAGS[first >> 4];
  if (required === undefined) return false;
  if (required === -1) return ((first >> 1) & 3) !== 3;
  return (first & 0x0f) === required;
}

/** Parses like mqtt-packet's parser, reading PUBLISH packets itself. */
export class PublishParser extends EventEmitter {
  readonly #inner: PacketParser;
  readonly #v5: boolean;
  readonly #Packet: new () => Record<string, unknown>;
  /** The start of a packet that has not fully arrived, and what arrived after it. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Bytes of the pending packet, header included; 0 while its header is incomplete. */
  #need = 0;
  /** mqtt-packet's parser takes every byte from now on. */
  #passthrough = false;
  readonly #oversize: OversizeSettings | undefined;
  /** The pending packet may be an oversized PUBLISH whose variable header is incomplete. */
  #maybeOversized = false;
  #oversized: Oversized | null = null;
  /** Set while an oversized packet's head is parsed: what its packet gets besides. */
  #whole: { size: number; digest: string; length: number } | null = null;

  constructor(settings?: ParserSettings) {
    super();
    this.#inner = original(settings);
    this.#v5 = settings?.protocolVersion === 5;
    this.#Packet = this.#inner.packet.constructor as new () => Record<string, unknown>;
    this.#oversize = settings?.oversize;
    this.#inner.on("packet", (packet) => this.#emit(packet));
    this.#inner.on("error", (error) => {
      this.#passthrough = true;
      this.emit("error", error);
    });
  }

  /** Takes the next bytes of the stream; emits each complete packet. */
  parse(chunk: Buffer): number {
    if (this.#passthrough) return this.#inner.parse(chunk);
    let buf = chunk;
    let pos = 0;
    if (this.#oversized) {
      pos = this.#readOversized(chunk, 0, chunk.length);
      if (this.#passthrough) return 0;
    } else if (this.#pendingBytes > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      if (this.#need === 0) {
        // The pending header was incomplete: join everything and parse again.
        buf = Buffer.concat(this.#pending, this.#pendingBytes);
        this.#pending = [];
        this.#pendingBytes = 0;
      } else if (this.#pendingBytes < this.#need) {
        if (this.#maybeOversized) this.#checkPendingOversized();
        return this.#pendingBytes;
      } else {
        // Copy only the packet that spans chunks; the rest is read in place.
        const need = this.#need;
        const packet = Buffer.concat(this.#pending, need);
        pos = chunk.length - (this.#pendingBytes - need);
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#need = 0;
        this.#maybeOversized = false;
        this.#packet(packet, 0, need);
        if (this.#passthrough) return 0;
      }
    }
    const end = buf.length;
    while (pos < end) {
      const first = buf[pos];
      if (!headerAccepted(first)) return this.#passThrough(buf.subarray(pos));
      // Remaining length: a variable byte integer of at most 4 bytes.
      let length = 0;
      let mul = 1;
      let i = pos + 1;
      let complete = false;
      while (i < end && i - pos <= 4) {
        const b = buf[i++];
        length += (b & 0x7f) * mul;
        mul *= 0x80;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (i - pos > 4) return this.#passThrough(buf.subarray(pos)); // mqtt-packet refuses it
        return this.#keep(buf.subarray(pos), 0);
      }
      const packetEnd = i + length;
      if (packetEnd > end) {
        if (this.#oversize && first >> 4 === PUBLISH && length > this.#oversize.above) {
          const payloadStart = this.#payloadStart(buf, pos, end);
          if (payloadStart === NEED_MORE) this.#maybeOversized = true;
          else if (payloadStart > 0 && packetEnd - payloadStart > this.#oversize.above) {
            this.#startOversized(buf.subarray(pos), payloadStart - pos, packetEnd - pos);
            return 0;
          }
        }
        return this.#keep(buf.subarray(pos), packetEnd - pos);
      }
      this.#packet(buf, pos, packetEnd);
      // mqtt-packet's parser refused the packet: it drops the rest of what it was given.
      if (this.#passthrough) return 0;
      pos = packetEnd;
    }
    return 0;
  }

  /** One complete packet, `buf[start, end)`. */
  #packet(buf: Buffer, start: number, end: number): void {
    const first = buf[start];
    if (this.#oversize && first >> 4 === PUBLISH && end - start > this.#oversize.above) {
      const payloadStart = this.#payloadStart(buf, start, end);
      if (payloadStart > 0 && end - payloadStart > this.#oversize.above) {
        this.#startOversized(buf.subarray(start, end), payloadStart - start, end - start);
        return;
      }
    }
    if (first >> 4 !== PUBLISH || !this.#publish(buf, start, end)) {
      this.#inner.parse(buf.subarray(start, end));
    }
  }

  /** Emits the PUBLISH in `buf[start, end)`; false when it is not one read here. */
  #publish(buf: Buffer, start: number, end: number): boolean {
    const first = buf[start];
    let p = start + 1;
    while (buf[p] & 0x80) p++; // the remaining length, already read
    p++;
    const length = end - p;
    if (p + 2 > end) return false;
    const topicStart = p + 2;
    const topicEnd = topicStart + ((buf[p] << 8) | buf[p + 1]);
    if (topicEnd > end) return false;
    p = topicEnd;
    const qos = (first >> 1) & 3;
    let messageId = 0;
    if (qos > 0) {
      if (p + 2 > end) return false;
      messageId = (buf[p] << 8) | buf[p + 1];
      p += 2;
    }
    if (this.#v5) {
      // Property length 0: mqtt-packet sets no `properties`. Others: its parser reads them.
      if (p >= end || buf[p] !== 0) return false;
      p++;
    }
    const packet = new this.#Packet();
    packet.cmd = "publish";
    packet.retain = (first & 0x01) !== 0;
    packet.qos = qos;
    packet.dup = (first & 0x08) !== 0;
    packet.length = length;
    packet.topic = buf.toString("utf8", topicStart, topicEnd);
    if (qos > 0) packet.messageId = messageId;
    packet.payload = buf.subarray(p, end);
    this.#emit(packet);
    return true;
  }

  #emit(packet: Record<string, unknown>): void {
    const whole = this.#whole;
    if (whole && packet.cmd === "publish") {
      this.#whole = null;
      packet.length = whole.length;
      packet.payloadSize = whole.size;
      packet.payloadDigest = whole.digest;
    }
    this.emit("packet", packet);
  }

  /**
   * Where the payload of the PUBLISH at `start` begins, from the bytes up to `end`:
   * NEED_MORE when its variable header goes on past `end`, MALFORMED when it cannot be read.
   * The fixed header is complete (the caller has read its remaining length).
   */
  #payloadStart(buf: Buffer, start: number, end: number): number {
    let p = start + 1;
    while (buf[p] & 0x80) p++;
    p++;
    if (p + 2 > end) return NEED_MORE;
    p += 2 + ((buf[p] << 8) | buf[p + 1]);
    if (((buf[start] >> 1) & 3) > 0) p += 2;
    if (this.#v5) {
      let length = 0;
      let mul = 1;
      for (let n = 0;; n++) {
        if (n === 4) return MALFORMED;
        if (p >= end) return NEED_MORE;
        const b = buf[p++];
        length += (b & 0x7f) * mul;
        mul *= 0x80;
        if ((b & 0x80) === 0) break;
      }
      p += length;
    }
    return p > end ? NEED_MORE : p;
  }

  /** The pending packet's variable header may have arrived: oversized or not, now? */
  #checkPendingOversized(): void {
    const sofar = Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [sofar];
    const payloadStart = this.#payloadStart(sofar, 0, sofar.length);
    if (payloadStart === NEED_MORE) return;
    this.#maybeOversized = false;
    if (payloadStart < 0 || this.#need - payloadStart <= this.#oversize!.above) return;
    const need = this.#need;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#need = 0;
    this.#startOversized(sofar, payloadStart, need);
  }

  /** Begins an oversized packet with its first bytes, `sofar` (its variable header whole). */
  #startOversized(sofar: Buffer, payloadStart: number, total: number): void {
    const keep = Math.min(this.#oversize!.keep, total - payloadStart);
    this.#oversized = {
      total,
      left: total,
      payloadStart,
      head: [],
      headBytes: 0,
      want: payloadStart + keep,
      hash: createHash("sha256"),
    };
    this.#readOversized(sofar, 0, sofar.length);
  }

  /** Takes the oversized packet's bytes from `buf[from, to)`; returns where it ended. */
  #readOversized(buf: Buffer, from: number, to: number): number {
    const o = this.#oversized!;
    const end = from + Math.min(to - from, o.left);
    const offset = o.total - o.left; // of buf[from] in the packet
    if (o.headBytes < o.want) {
      const take = Math.min(o.want - o.headBytes, end - from);
      o.head.push(Buffer.from(buf.subarray(from, from + take)));
      o.headBytes += take;
    }
    const payloadFrom = Math.max(from, from + o.payloadStart - offset);
    if (payloadFrom < end) o.hash.update(buf.subarray(payloadFrom, end));
    o.left -= end - from;
    if (o.left === 0) {
      this.#oversized = null;
      this.#endOversized(o);
    }
    return end;
  }

  /** Emits the oversized packet: its head, parsed as a packet of that length. */
  #endOversized(o: Oversized): void {
    const head = Buffer.concat(o.head, o.headBytes);
    let fixed = 1;
    while (head[fixed] & 0x80) fixed++;
    fixed++;
    const rest = head.length - fixed;
    const length: number[] = [];
    let n = rest;
    do {
      length.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
      n >>>= 7;
    } while (n > 0);
    const packet = Buffer.concat([Buffer.of(head[0], ...length), head.subarray(fixed)]);
    this.#whole = {
      size: o.total - o.payloadStart,
      digest: o.hash.digest("hex"),
      length: o.total - fixed,
    };
    if (!this.#publish(packet, 0, packet.length)) this.#inner.parse(packet);
    this.#whole = null;
  }

  /** Keeps the start of a packet until the rest arrives. */
  #keep(part: Buffer, need: number): number {
    this.#pending.push(part);
    this.#pendingBytes += part.length;
    this.#need = need;
    return this.#pendingBytes;
  }

  #passThrough(rest: Buffer): number {
    this.#passthrough = true;
    return this.#inner.parse(rest);
  }
}

let installed = false;

/**
 * Makes every MQTT.js client of this process parse with `PublishParser` (MQTT.js asks
 * mqtt-packet for a parser at each connect). Idempotent.
 */
export function installPublishParser(): void {
  if (installed) return;
  installed = true;
  (mqttPacket as unknown as { parser: ParserFactory }).parser = (settings) =>
    new PublishParser(settings) as unknown as PacketParser;
}
