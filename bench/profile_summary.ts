/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`): self time and total time
 * per function, the heaviest first. Usage: deno run -R bench/profile_summary.ts FILE [N]
 */
interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

/** Self and total milliseconds per function, from a profile. */
export function summarise(profile: Profile): { name: string; selfMs: number; totalMs: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + profile.timeDeltas[i]));
  const label = (n: Node) => {
    const file = n.callFrame.url.split("/").slice(-2).join("/");
    return `${n.callFrame.functionName || "(anonymous)"} ${file}:${n.callFrame.lineNumber + 1}`;
  };
  const selfBy = new Map<string, number>();
  const totalBy = new Map<string, number>();
  for (const [id, us] of self) {
    const name = label(byId.get(id)!);
    selfBy.set(name, (selfBy.get(name) ?? 0) + us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!);
      if (seen.has(l)) continue;
      seen.add(l);
      totalBy.set(l, (totalBy.get(l) ?? 0) + us);
    }
  }
  return [...totalBy.keys()].map((name) => ({
    name,
    selfMs: (selfBy.get(name) ?? 0) / 1000,
    totalMs: (totalBy.get(name) ?? 0) / 1000,
  }));
}

if (import.meta.main) {
  const profile = JSON.parse(await Deno.readTextFile(Deno.args[0])) as Profile;
  const n = Number(Deno.args[1] ?? 30);
  const rows = summarise(profile);
  console.log("-- by self time");
  for (const r of [...rows].sort((a, b) => b.selfMs - a.selfMs).slice(0, n)) {
    console.log(
      `${r.selfMs.toFixed(0).padStart(7)} ms self ${
        r.totalMs.toFixed(0).padStart(7)
      } total  ${r.name}`,
    );
  }
  console.log("-- by total time");
  for (const r of [...rows].sort((a, b) => b.totalMs - a.totalMs).slice(0, n)) {
    console.log(
      `${r.selfMs.toFixed(0).padStart(7)} ms self ${
        r.totalMs.toFixed(0).padStart(7)
      } total  ${r.name}`,
    );
  }
}
