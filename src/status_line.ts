/**
 * The one way a long run (`replay`, `simulate`) shows how it is doing: on a terminal, one
 * line redrawn in place; otherwise (a log file, CI) a plain line now and then, so the log
 * is not flooded. Callers say what the line says; this says when and how it is drawn.
 */

/** `live`: redrawn in place (a terminal); `lines`: appended now and then; `off`: silent. */
export type StatusMode = "live" | "lines" | "off";

/** Options of {@linkcode StatusLine}. */
export interface StatusLineOptions {
  mode: StatusMode;
  write: (text: string) => void;
  /** Least time between two redraws in `live` mode. */
  liveIntervalMs: number;
  /** Least time between two lines in `lines` mode. */
  lineIntervalMs: number;
  /** Put before each plain line (e.g. `replay: `). */
  prefix?: string;
  /** Milliseconds now (default `performance.now()`); tests give a clock they move. */
  now?: () => number;
}

/** Shows a status line at a bounded rate. */
export class StatusLine {
  readonly #opts: StatusLineOptions;
  readonly #now: () => number;
  #last: number;
  #drawn = false;

  constructor(opts: StatusLineOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#last = this.#now();
  }

  /** Is a line due now? Lets a caller skip composing one that would not be drawn. */
  due(now = this.#now()): boolean {
    const { mode, liveIntervalMs, lineIntervalMs } = this.#opts;
    if (mode === "off") return false;
    return now - this.#last >= (mode === "live" ? liveIntervalMs : lineIntervalMs);
  }

  /** Draws `text` if a line is due, or always with `force`. */
  show(text: string, force = false): void {
    const now = this.#now();
    if (!force && !this.due(now)) return;
    if (this.#opts.mode === "off") return;
    this.#last = now;
    if (this.#opts.mode === "lines") {
      this.#opts.write(`${this.#opts.prefix ?? ""}${text}\n`);
      return;
    }
    // \r and "erase line" (CSI 2K) redraw in place.
    this.#opts.write(`\r\x1b[2K${text}`);
    this.#drawn = true;
  }

  /** Ends the live line: cleared (`keep` false) or left on screen with a newline. */
  finish(keep = false): void {
    if (!this.#drawn) return;
    this.#opts.write(keep ? "\n" : "\r\x1b[2K");
    this.#drawn = false;
  }
}
