/**
 * MQTT.js's packet parsing of a stream of PUBLISH packets like the bench's (MQTT 5, QoS
 * 1, a feed topic, `{"value": n, "ts": …}`), cut into 64 KB chunks as a socket delivers
 * them: mqtt-packet's parser against src/mqtt/publish_parser.ts. `deno bench bench/`.
 */
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { PublishParser } from "../src/mqtt/publish_parser.ts";

interface Parser {
  on(event: "packet", listener: (p: unknown) => void): unknown;
  parse(buf: Buffer): number;
}
const packet = mqttPacket as unknown as {
  parser(o: object): Parser;
  generate(p: object, o: object): Buffer;
};

const user = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const nowUs = Date.now() * 1000;
const packets = Array.from({ length: 10_000 }, (_, i) =>
  packet.generate({
    cmd: "publish",
    topic: `${user}/dev${i % 10}/feeds/dev${i % 10}-f${i % 5}`,
    payload: Buffer.from(`{"value": ${i}, "ts": ${nowUs + i}}`),
    qos: 1,
    messageId: (i % 65535) + 1,
  }, { protocolVersion: 5 }));
const stream = Buffer.concat(packets);
const chunks: Buffer[] = [];
for (let at = 0; at < stream.length; at += 65_536) chunks.push(stream.subarray(at, at + 65_536));

function parseAll(parser: Parser): void {
  let n = 0;
  parser.on("packet", () => n++);
  for (const c of chunks) parser.parse(c);
  if (n !== packets.length) throw new Error(`parsed ${n} of ${packets.length}`);
}

Deno.bench("mqtt-packet's parser, 10,000 PUBLISH", { group: "parse", baseline: true }, () => {
  parseAll(packet.parser({ protocolVersion: 5 }));
});

Deno.bench("PublishParser, 10,000 PUBLISH", { group: "parse" }, () => {
  parseAll(new PublishParser({ protocolVersion: 5 }) as unknown as Parser);
});
