/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests:
 * it throws on any line a Prometheus server would refuse, and returns the samples.
 *
 * @module
 */

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition: samples, and each family's TYPE and HELP. */
export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  help: Map<string, string>;
  /** The value of `name` with exactly `labels`; throws when there is no such sample. */
  value(name: string, labels?: Record<string, string>): number;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const LABEL_RE = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Parses `text`; throws an Error naming the line on anything malformed. */
export function parsePrometheusText(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, i) => {
    const where = `line ${i + 1} "${line}"`;
    if (line.startsWith("# HELP ")) {
      const [name, ...rest] = line.slice(7).split(" ");
      if (!new RegExp(`^${NAME}$`).test(name)) throw new Error(`bad HELP name at ${where}`);
      if (help.has(name)) throw new Error(`second HELP for ${name} at ${where}`);
      help.set(name, rest.join(" "));
      return;
    }
    if (line.startsWith("# TYPE ")) {
      const [name, type, extra] = line.slice(7).split(" ");
      if (!TYPES.has(type) || extra !== undefined) throw new Error(`bad TYPE at ${where}`);
      if (types.has(name)) throw new Error(`second TYPE for ${name} at ${where}`);
      if (samples.some((s) => familyOf(s.name, types) === name)) {
        throw new Error(`TYPE after samples of ${name} at ${where}`);
      }
      types.set(name, type);
      return;
    }
    if (line.startsWith("#")) return;
    const m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`malformed sample at ${where}`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? "";
    while (rest.length > 0) {
      const l = LABEL_RE.exec(rest);
      if (!l) throw new Error(`malformed labels at ${where}`);
      if (l[1] in labels) throw new Error(`repeated label ${l[1]} at ${where}`);
      labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
      rest = rest.slice(l[0].length);
    }
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") throw new Error(`bad value at ${where}`);
    const family = familyOf(m[1], types);
    if (!types.has(family)) throw new Error(`sample without TYPE at ${where}`);
    samples.push({ name: m[1], labels, value });
  });
  checkHistograms(samples, types);
  const key = (name: string, labels: Record<string, string>) =>
    `${name}${JSON.stringify(Object.entries(labels).sort())}`;
  const seen = new Set<string>();
  for (const s of samples) {
    const k = key(s.name, s.labels);
    if (seen.has(k)) throw new Error(`duplicate sample ${k}`);
    seen.add(k);
  }
  return {
    samples,
    types,
    help,
    value(name, labels = {}) {
      const s = samples.find((x) => key(x.name, x.labels) === key(name, labels));
      if (!s) throw new Error(`no sample ${name}${JSON.stringify(labels)}`);
      return s.value;
    },
  };
}

function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (types.get(base) === "histogram") return base;
    }
  }
  return name;
}

/** Buckets cumulative, ascending `le`, ending in +Inf that equals `_count`. */
function checkHistograms(samples: Sample[], types: Map<string, string>): void {
  for (const [name, type] of types) {
    if (type !== "histogram") continue;
    const buckets = samples.filter((s) => s.name === `${name}_bucket`);
    const count = samples.find((s) => s.name === `${name}_count`);
    if (!count || !samples.some((s) => s.name === `${name}_sum`)) {
      throw new Error(`histogram ${name} lacks _sum or _count`);
    }
    let lastLe = -Infinity;
    let lastCount = 0;
    for (const b of buckets) {
      const le = b.labels.le === "+Inf" ? Infinity : Number(b.labels.le);
      if (!(le > lastLe)) throw new Error(`histogram ${name}: le not ascending at ${b.labels.le}`);
      if (b.value < lastCount) throw new Error(`histogram ${name}: buckets not cumulative`);
      lastLe = le;
      lastCount = b.value;
    }
    if (lastLe !== Infinity || lastCount !== count.value) {
      throw new Error(`histogram ${name}: +Inf bucket missing or not equal to _count`);
    }
  }
}
