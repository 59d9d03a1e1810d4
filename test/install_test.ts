/**
 * `deno task install` (scripts/install.ts) gives a working `feedline` command: installed into a
 * temporary root, it runs from another folder, without this checkout's deno.json.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

Deno.test("deno task install --root DIR installs a feedline command that runs", async () => {
  const root = await Deno.makeTempDir({ prefix: "feedline-install-" });
  const elsewhere = await Deno.makeTempDir({ prefix: "feedline-cwd-" });
  try {
    const installed = await new Deno.Command(Deno.execPath(), {
      args: ["task", "install", "--root", root],
      cwd: new URL(".", ROOT).pathname,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = (b: Uint8Array) => new TextDecoder().decode(b);
    assert.equal(installed.code, 0, dec(installed.stderr));
    assert.match(dec(installed.stdout), new RegExp(`installed ${root}/bin/feedline`));

    // A deno.json in the caller's folder (another project) must not matter.
    await Deno.writeTextFile(`${elsewhere}/deno.json`, `{"imports": {"zod": "npm:zod@3.0.0"}}`);
    const denoJson = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
    const version = await new Deno.Command(`${root}/bin/feedline`, {
      args: ["--version"],
      cwd: elsewhere,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(version.code, 0, dec(version.stderr));
    assert.equal(dec(version.stdout).trim(), `feedline ${denoJson.version}`);
    // The embedded database's files sit beside the bundle, for `feedline serve` with no URLs.
    assert.ok((await Deno.stat(`${root}/lib/feedline/pglite.wasm`)).isFile);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});
