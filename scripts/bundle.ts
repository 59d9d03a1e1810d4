/**
 * `deno task bundle`: one JavaScript file that runs feedline with `deno run -A`.
 *
 *   deno task bundle                 # → dist/feedline.js (+ the embedded database's files)
 *   deno run -A scripts/bundle.ts --out /tmp/x/feedline.js --no-assets
 *
 * `deno bundle` (esbuild) inlines every module and npm package. Two things a bundle
 * cannot find beside itself are handled here:
 * - the `sql/` migrations: a generated module holding them replaces
 *   src/db/bundled_migrations.ts (through an import map), so `migrate` and `serve` work;
 * - PGlite's wasm and data files (about 15 MB), which PGlite loads from next to its own
 *   module: they are copied next to the bundle. The bundle alone runs with DATABASE_URL;
 *   with the three files beside it, the embedded database works too.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url);
const PGLITE_ASSETS = ["pglite.wasm", "pglite.data", "initdb.wasm"];

/** Bundles `main.ts` to `out`; returns the asset files copied beside it. */
export async function bundle(given: string, opts: { assets: boolean }): Promise<string[]> {
  // `deno bundle` runs in the checkout: a relative `out` is the caller's, not the checkout's.
  const out = resolve(given);
  const outDir = out.replace(/[^/]*$/, "") || "./";
  await Deno.mkdir(outDir, { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "feedline-bundle-" });
  try {
    const migrations: Record<string, string> = {};
    for await (const entry of Deno.readDir(new URL("sql/", ROOT))) {
      if (entry.isFile && entry.name.endsWith(".sql")) {
        migrations[entry.name] = await Deno.readTextFile(new URL(`sql/${entry.name}`, ROOT));
      }
    }
    const generated = `${work}/bundled_migrations.ts`;
    await Deno.writeTextFile(
      generated,
      `export const BUNDLED_MIGRATIONS: Record<string, string> | null = ${
        JSON.stringify(migrations)
      };\n`,
    );
    // --import-map replaces deno.json's "imports", so the map repeats them.
    const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
    const importMap = {
      imports: {
        ...config.imports,
        [new URL("src/db/bundled_migrations.ts", ROOT).href]: `file://${generated}`,
      },
    };
    const mapPath = `${work}/import_map.json`;
    await Deno.writeTextFile(mapPath, JSON.stringify(importMap));
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "deno",
        "--import-map",
        mapPath,
        "--output",
        out,
        new URL("main.ts", ROOT).pathname,
      ],
      cwd: new URL(".", ROOT).pathname,
      stdout: "inherit",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    if (!result.success) throw new Error(`deno bundle failed:\n${stderr}`);
    const text = await Deno.readTextFile(out);
    if (!text.includes("schema_migrations") || !text.includes(Object.keys(migrations)[0])) {
      throw new Error("the bundle does not carry the migrations; was the import map ignored?");
    }
    if (!opts.assets) return [];
    const pgliteDir = await findPgliteDist();
    const copied: string[] = [];
    for (const name of PGLITE_ASSETS) {
      await Deno.copyFile(`${pgliteDir}/${name}`, `${outDir}${name}`);
      copied.push(`${given.replace(/[^/]*$/, "")}${name}`); // as the caller named it
    }
    return copied;
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/** The folder of the PGlite package deno.json pins, in Deno's npm cache. */
async function findPgliteDist(): Promise<string> {
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("src/embedded/services.ts", ROOT).pathname],
    cwd: new URL(".", ROOT).pathname, // deno.json's imports
    stdout: "piped",
    stderr: "null",
  }).output();
  const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as {
    npmPackages?: Record<string, { name: string; version: string; localPath?: string }>;
  };
  const pkg = Object.values(graph.npmPackages ?? {}).find((p) => p.name === "@electric-sql/pglite");
  if (!pkg?.localPath) {
    throw new Error("@electric-sql/pglite is not in the module graph of src/embedded/services.ts");
  }
  return `${pkg.localPath}/dist`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string", default: "dist/feedline.js" },
      "no-assets": { type: "boolean", default: false },
    },
  });
  const copied = await bundle(values.out!, { assets: !values["no-assets"] });
  const size = (await Deno.stat(values.out!)).size;
  console.log(`${values.out} (${(size / 1e6).toFixed(1)} MB): deno run -A ${values.out} serve`);
  if (copied.length > 0) {
    console.log(
      `embedded database files beside it: ${copied.join(", ")} ` +
        "(not needed with DATABASE_URL)",
    );
  }
}
