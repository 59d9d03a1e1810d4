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
 */
import mqttPacket from "mqtt-packet";
import { EventEmitter } from "node:events";
import { Buffer } from "node:buffer";

/** mqtt-packet's parser: parse() emits `packet` and `error`. */
interface PacketParser extends EventEmitter {
  parse(buf: Buffer): number;
  packet: object;
}

/** The settings MQTT.js passes (its client options). */
interface ParserSettings {
  protocolVersion?: number;
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

  constructor(settings?: ParserSettings) {
    super();
    this.#inner = original(settings);
    this.#v5 = settings?.protocolVersion === 5;
    this.#Packet = this.#inner.packet.constructor as new () => Record<string, unknown>;
    this.#inner.on("packet", (packet) => this.emit("packet", packet));
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
    if (this.#pendingBytes > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      if (this.#need === 0) {
        // The pending header was incomplete: join everything and parse again.
        buf = Buffer.concat(this.#pending, this.#pendingBytes);
        this.#pending = [];
        this.#pendingBytes = 0;
      } else if (this.#pendingBytes < this.#need) {
        return this.#pendingBytes;
      } else {
        // Copy only the packet that spans chunks; the rest is read in place.
        const need = this.#need;
        const packet = Buffer.concat(this.#pending, need);
        pos = chunk.length - (this.#pendingBytes - need);
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#need = 0;
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
      if (packetEnd > end) return this.#keep(buf.subarray(pos), packetEnd - pos);
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
    this.emit("packet", packet);
    return true;
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
