/**
 * `deno task install`: a `feedline` command (docs/operations.md, "Install").
 *
 *   deno task install                     # → ~/.deno/bin/feedline (or $DENO_INSTALL_ROOT/bin)
 *   sudo deno task install --root /usr/local   # → /usr/local/bin/feedline (the systemd unit's)
 *
 * It bundles feedline (scripts/bundle.ts: one JavaScript file with its npm packages and the
 * sql/ migrations, PGlite's files beside it) into `<root>/lib/feedline/` and writes a shell
 * script `<root>/bin/feedline` that runs it with this Deno. So the command needs neither this
 * checkout nor npm at run time, and `deno install -g main.ts` (which needs `--config
 * deno.json` and resolves the packages again) is not needed. Run it again to update.
 */
import { parseArgs } from "node:util";
import { bundle } from "./bundle.ts";

/** The installation root by Deno's own rule: --root, DENO_INSTALL_ROOT, then ~/.deno. */
function defaultRoot(): string {
  const fromEnv = Deno.env.get("DENO_INSTALL_ROOT");
  if (fromEnv) return fromEnv;
  const home = Deno.env.get("HOME");
  if (!home) throw new Error("HOME is not set; pass --root DIR");
  return `${home}/.deno`;
}

/** The script `<root>/bin/feedline`: runs the bundle with this Deno, wherever it is called. */
export function launcher(deno: string, bundleFile: string): string {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  // --no-config: a deno.json in the caller's folder must not change how the bundle runs.
  return [
    "#!/bin/sh",
    "# feedline, installed by `deno task install` (docs/operations.md, Install)",
    `exec ${quote(deno)} run -A --no-config ${quote(bundleFile)} "$@"`,
    "",
  ].join("\n");
}

/** Installs under `root`; returns the command's path. */
export async function install(root: string): Promise<string> {
  const libDir = `${root}/lib/feedline`;
  const binDir = `${root}/bin`;
  await Deno.mkdir(binDir, { recursive: true });
  const bundleFile = `${libDir}/feedline.js`;
  await bundle(bundleFile, { assets: true });
  const command = `${binDir}/feedline`;
  await Deno.writeTextFile(command, launcher(Deno.execPath(), bundleFile), { mode: 0o755 });
  await Deno.chmod(command, 0o755);
  return command;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { root: { type: "string" } },
  });
  const root = values.root ?? defaultRoot();
  const command = await install(root.replace(/\/+$/, "") || "/");
  console.log(`installed ${command}; try: ${command} --version`);
  const path = (Deno.env.get("PATH") ?? "").split(":");
  if (!path.includes(command.replace(/\/feedline$/, ""))) {
    console.log(`add it to PATH: export PATH="${command.replace(/\/feedline$/, "")}:$PATH"`);
  }
}
