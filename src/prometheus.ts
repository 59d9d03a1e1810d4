/**
 * A small Prometheus registry: counters and gauges with labels, and histograms, rendered
 * in the text exposition format (version 0.0.4). Enough for feedline; no dependency.
 */

type Labels = Record<string, string>;

function labelKey(labels: Labels | undefined): string {
  if (!labels) return "";
  const parts = Object.keys(labels).sort().map((k) =>
    `${k}="${labels[k].replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

interface Metric {
  render(): string;
}

/** A monotonically increasing count, optionally per label set. */
export class Counter implements Metric {
  #values = new Map<string, number>();
  /** `read`: counts kept elsewhere, read at scrape time (monotonic all the same). */
  constructor(
    readonly name: string,
    readonly help: string,
    readonly read?: () => [Labels, number][],
  ) {}
  inc(labels?: Labels, n = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + n);
  }
  get(labels?: Labels): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  /** Sum over all label sets. */
  total(): number {
    let sum = 0;
    for (const v of this.#values.values()) sum += v;
    return sum;
  }
  /** Declares a label set at zero so it shows before the first event. */
  init(labels: Labels): void {
    const key = labelKey(labels);
    if (!this.#values.has(key)) this.#values.set(key, 0);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [l, v] of this.read?.() ?? []) lines.push(`${this.name}${labelKey(l)} ${v}`);
    for (const [k, v] of this.#values) lines.push(`${this.name}${k} ${v}`);
    if (lines.length === 2) lines.push(`${this.name} 0`);
    return lines.join("\n");
  }
}

/** A value read at scrape time. */
export class Gauge implements Metric {
  #values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly read?: () => number | [Labels, number][],
  ) {}
  set(value: number, labels?: Labels): void {
    this.#values.set(labelKey(labels), value);
  }
  get(labels?: Labels): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const read = this.read?.();
    if (typeof read === "number") lines.push(`${this.name} ${read}`);
    else if (read) { for (const [l, v] of read) lines.push(`${this.name}${labelKey(l)} ${v}`); }
    for (const [k, v] of this.#values) lines.push(`${this.name}${k} ${v}`);
    if (lines.length === 2) lines.push(`${this.name} 0`);
    return lines.join("\n");
  }
}

/** Observations in cumulative buckets. */
export class Histogram implements Metric {
  #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {
    this.#counts = new Array(buckets.length).fill(0);
  }
  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]) this.#counts[i]++;
    }
  }
  get count(): number {
    return this.#count;
  }
  get sum(): number {
    return this.#sum;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.#counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`);
    lines.push(`${this.name}_sum ${this.#sum}`, `${this.name}_count ${this.#count}`);
    return lines.join("\n");
  }
}

/** A set of metrics rendered together. */
export class Registry {
  #metrics: Metric[] = [];
  add<M extends Metric>(metric: M): M {
    this.#metrics.push(metric);
    return metric;
  }
  render(): string {
    return this.#metrics.map((m) => m.render()).join("\n") + "\n";
  }
}
