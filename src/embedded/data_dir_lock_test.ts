import assert from "node:assert/strict";
import { FeedlineError } from "../errors.ts";
import { lockDataDir, lockHolder } from "./data_dir_lock.ts";

Deno.test("lockDataDir: a second holder is refused, naming the first and what to do", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-lock-" });
  try {
    const lock = await lockDataDir(dir, "feedline serve");
    assert.deepEqual(await lockHolder(dir), { pid: Deno.pid, command: "feedline serve" });
    await assert.rejects(lockDataDir(dir, "feedline migrate"), (error: unknown) => {
      assert.ok(error instanceof FeedlineError);
      assert.equal(error.code, "DATA_DIR_LOCKED");
      assert.equal(
        error.message,
        `${dir} is in use by feedline serve (pid ${Deno.pid}); stop it first, ` +
          "or use --data-dir to pick another folder",
      );
      return true;
    });
    await lock.release();
    assert.equal(await lockHolder(dir), null);
    const again = await lockDataDir(dir, "feedline migrate");
    await again.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lockDataDir: a lock left by a process that died is taken over", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-lock-" });
  try {
    const dead = new Deno.Command("true").spawn();
    await dead.status;
    await Deno.writeTextFile(
      `${dir}/lock`,
      JSON.stringify({ pid: dead.pid, command: "feedline serve" }),
    );
    assert.equal(await lockHolder(dir), null);
    const lock = await lockDataDir(dir, "feedline serve");
    assert.equal((await lockHolder(dir))?.pid, Deno.pid);
    await lock.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
