/**
 * Progress of a long run: a live bar with rate and ETA on a terminal, a plain line now
 * and then otherwise (log files, CI). The ETA comes from the share of the input done
 * (bytes of the files, or rows), when that total is known. Drawn by the status line
 * simulate uses too (src/status_line.ts).
 */
import { StatusLine } from "../status_line.ts";

/** How progress is shown. */
export type ProgressMode = "bar" | "lines" | "off";

/** Options of {@linkcode Progress}. */
export interface ProgressOptions {
  mode: ProgressMode;
  /** Size of the whole input in the unit of `done` (bytes, rows); null when unknown. */
  total: number | null;
  write: (text: string) => void;
  /** Least time between two plain lines. */
  lineIntervalMs?: number;
  /** Milliseconds now (default `performance.now()`); tests give a clock they move. */
  now?: () => number;
}

const BAR_INTERVAL_MS = 200;
const BAR_WIDTH = 24;
const int = new Intl.NumberFormat("en-US");

/** Formats seconds as m:ss or h:mm:ss. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** One progress line: count, rate, share done and ETA when known. */
export function describeProgress(
  messages: number,
  elapsedMs: number,
  done: number,
  total: number | null,
): { fraction: number | null; text: string } {
  const perSec = elapsedMs > 0 ? messages / (elapsedMs / 1000) : 0;
  const fraction = total && total > 0 ? Math.min(1, done / total) : null;
  let text = `${int.format(messages)} messages, ${int.format(Math.round(perSec))}/s`;
  if (fraction !== null) {
    text += `, ${Math.floor(fraction * 100)}%`;
    if (fraction > 0 && fraction < 1) {
      const eta = (elapsedMs / 1000) * (1 - fraction) / fraction;
      text += `, ETA ${formatDuration(eta)}`;
    }
  }
  return { fraction, text };
}

/** Shows progress; call `update` often, it renders at a bounded rate (src/status_line.ts). */
export class Progress {
  readonly #opts: ProgressOptions;
  readonly #now: () => number;
  readonly #started: number;
  readonly #line: StatusLine;

  constructor(opts: ProgressOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#started = this.#now();
    this.#line = new StatusLine({
      now: this.#now,
      mode: opts.mode === "bar" ? "live" : opts.mode,
      write: opts.write,
      liveIntervalMs: BAR_INTERVAL_MS,
      lineIntervalMs: opts.lineIntervalMs ?? 5000,
      prefix: "replay: ",
    });
  }

  /** `done` in the unit of the total; `messages` so far. */
  update(done: number, messages: number): void {
    const now = this.#now();
    if (!this.#line.due(now)) return;
    const { fraction, text } = describeProgress(
      messages,
      now - this.#started,
      done,
      this.#opts.total,
    );
    const bar = this.#opts.mode !== "bar" || fraction === null
      ? ""
      : `[${"█".repeat(Math.round(fraction * BAR_WIDTH)).padEnd(BAR_WIDTH, "░")}] `;
    this.#line.show(bar + text);
  }

  /** Clears the bar, so the summary starts on a clean line. */
  finish(): void {
    this.#line.finish();
  }
}
