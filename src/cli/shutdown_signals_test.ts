import assert from "node:assert/strict";
import { exitCodeOf, ShutdownSignals, type StopSignal } from "./shutdown_signals.ts";

Deno.test("ShutdownSignals: a signal repeated within the window counts once", () => {
  let t = 0;
  const calls: string[] = [];
  const s = new ShutdownSignals({
    onFirst: (sig) => calls.push(`first ${sig}`),
    onSecond: (sig) => calls.push(`second ${sig}`),
    now: () => t,
  });
  assert.equal(s.handle("SIGINT"), "first");
  t = 5;
  assert.equal(s.handle("SIGINT"), "repeat"); // deno task forwarding the same Ctrl-C
  t = 999;
  assert.equal(s.handle("SIGTERM"), "repeat");
  assert.deepEqual(calls, ["first SIGINT"]);
  t = 1000;
  assert.equal(s.handle("SIGINT"), "second");
  assert.deepEqual(calls, ["first SIGINT", "second SIGINT"]);
});

Deno.test("exitCodeOf: 128 + the signal number, as shells report it", () => {
  const codes: Record<StopSignal, number> = { SIGINT: 130, SIGTERM: 143 };
  for (const [sig, code] of Object.entries(codes)) {
    assert.equal(exitCodeOf(sig as StopSignal), code);
  }
});
