import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { HeldCopies } from "./held_copies.ts";

const bytes = (s: string) => Buffer.from(s);

Deno.test("a copy is a later connection's PUBLISH with DUP and the same id, topic and payload", () => {
  const copies = new HeldCopies<string>();
  const held = copies.hold(7, "t/a", bytes("21.5"), 1, "first", null);
  assert.equal(copies.copyOf(7, "t/a", bytes("21.5"), true, "first"), null, "same connection");
  assert.equal(copies.copyOf(7, "t/a", bytes("21.5"), true, "second"), held);
  copies.moveTo(held, "second", null);
  assert.equal(copies.copyOf(7, "t/a", bytes("21.5"), true, "second"), null, "moved: its own");
  assert.deepEqual(copies.countEarlier("third"), { held: 1, written: 0 });
});

Deno.test("without DUP, or with another topic or payload, a PUBLISH is a new message and the held one is written", () => {
  for (
    const [topic, payload, dup] of [["t/a", "1", false], ["t/b", "1", true], ["t/a", "2", true]]
  ) {
    const copies = new HeldCopies<string>();
    copies.hold(7, "t/a", bytes("1"), 2, "first", null);
    assert.equal(
      copies.copyOf(7, topic as string, bytes(payload as string), dup as boolean, "second"),
      null,
    );
    // The broker gave id 7 to another message: the held one will not come again.
    assert.deepEqual(copies.countEarlier("second"), { held: 0, written: 0 });
  }
});

Deno.test("written without an ack, released, or forgotten with the session", () => {
  const copies = new HeldCopies<string>();
  const a = copies.hold(1, "t", bytes("a"), 1, "first", null);
  const b = copies.hold(2, "t", bytes("b"), 1, "first", null);
  copies.hold(3, "t", bytes("c"), 1, "second", null);
  copies.markWritten(a);
  assert.equal(copies.copyOf(1, "t", bytes("a"), true, "second")?.written, true);
  copies.release(b);
  assert.equal(copies.copyOf(2, "t", bytes("b"), true, "second"), null);
  assert.deepEqual(copies.forgetEarlier("second"), { held: 0, written: 1 });
  assert.equal(copies.copyOf(1, "t", bytes("a"), true, "second"), null);
  assert.deepEqual(copies.countEarlier("third"), { held: 1, written: 0 }, "id 3 stays");
});

Deno.test("an oversized message is held by its head and digest: another tail is another message", () => {
  const copies = new HeldCopies<string>();
  const held = copies.hold(7, "t/a", bytes('{"pad":'), 1, "first", null, "digest-1");
  assert.equal(copies.copyOf(7, "t/a", bytes('{"pad":'), true, "second", "digest-1"), held);
  assert.equal(
    copies.copyOf(7, "t/a", bytes('{"pad":'), true, "second", "digest-2"),
    null,
    "the same head, another payload",
  );
  const whole = copies.hold(8, "t/a", bytes('{"pad":'), 1, "first", null);
  assert.equal(
    copies.copyOf(8, "t/a", bytes('{"pad":'), true, "second", "digest-1"),
    null,
    "a whole payload is not the head of an oversized one",
  );
  assert.notEqual(whole, null);
});
