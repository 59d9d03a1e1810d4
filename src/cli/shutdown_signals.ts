/**
 * How `serve` counts SIGINT and SIGTERM. `deno task` forwards the signals it gets to its
 * child, so one Ctrl-C in a terminal (or one SIGTERM to the process group) reaches serve
 * twice, a moment apart: a signal within `repeatWindowMs` of the first is that same
 * request and is ignored. A signal after that is a deliberate second request: serve says
 * what it would leave unwritten and exits at once (130 after SIGINT, 143 after SIGTERM).
 */

/** The signals serve stops on. */
export type StopSignal = "SIGINT" | "SIGTERM";

/** What to do on the first and on a deliberate second signal. */
export interface ShutdownSignalOptions {
  /** The first signal: start a graceful stop. */
  onFirst(signal: StopSignal): void;
  /** A deliberate second signal: the caller exits. */
  onSecond(signal: StopSignal): void;
  /** Signals this soon after the first count as the first. Default 1000 ms. */
  repeatWindowMs?: number;
  /** Clock (tests). */
  now?: () => number;
}

/** The exit status of a process ended by `signal`, as a shell reports it. */
export function exitCodeOf(signal: StopSignal): number {
  return signal === "SIGINT" ? 130 : 143;
}

/** Decides, signal by signal, what a stop request means. */
export class ShutdownSignals {
  #first: number | null = null;
  readonly #opts: ShutdownSignalOptions;

  constructor(opts: ShutdownSignalOptions) {
    this.#opts = opts;
  }

  /** Handles one signal; returns what it counted as. */
  handle(signal: StopSignal): "first" | "repeat" | "second" {
    const now = (this.#opts.now ?? Date.now)();
    if (this.#first === null) {
      this.#first = now;
      this.#opts.onFirst(signal);
      return "first";
    }
    if (now - this.#first < (this.#opts.repeatWindowMs ?? 1000)) return "repeat";
    this.#opts.onSecond(signal);
    return "second";
  }
}

/**
 * Listens for SIGINT and SIGTERM until the returned function is called; each goes
 * through a {@linkcode ShutdownSignals}.
 */
export function listenForStopSignals(opts: ShutdownSignalOptions): () => void {
  const signals = new ShutdownSignals(opts);
  const onInt = () => signals.handle("SIGINT");
  const onTerm = () => signals.handle("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  return () => {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  };
}

/** What {@linkcode runUntilStopSignal} runs. */
export interface StoppableRun<T> {
  /** Starts everything; a signal during the start still ends cleanly after it. */
  start(): Promise<T>;
  /** Stops gracefully (drains, then closes). */
  stop(running: T): Promise<void>;
  /** Logs, on a deliberate second signal, what is left unwritten; then the process exits. */
  onSecondSignal(signal: StopSignal, running: T | null): void;
  /** Runs once started (e.g. a hint for the user, the process guard); returns its undo. */
  started?(running: T): () => void;
  /** Logs that the first signal arrived and the graceful stop begins. */
  onStopping?(): void;
}

/**
 * Starts, waits for SIGINT or SIGTERM, stops. Signals are watched from the start until
 * the end: a signal while starting still ends cleanly, the copy `deno task` forwards is
 * ignored, a deliberate second one exits at once. After a clean stop the process exits 0
 * even if a socket or timer would keep it alive (a hung connection): the shutdown timeout
 * is a promise.
 */
export async function runUntilStopSignal<T>(run: StoppableRun<T>): Promise<void> {
  let signalled!: () => void;
  const signal = new Promise<void>((resolve) => signalled = resolve);
  let running: T | null = null;
  const stopListening = listenForStopSignals({
    onFirst: () => signalled(),
    onSecond(sig) {
      run.onSecondSignal(sig, running);
      Deno.exit(exitCodeOf(sig));
    },
  });
  try {
    running = await run.start();
  } catch (error) {
    stopListening();
    throw error;
  }
  const undo = run.started?.(running) ?? (() => {});
  await signal;
  run.onStopping?.();
  await run.stop(running);
  stopListening();
  undo();
  const exit = setTimeout(() => Deno.exit(Deno.exitCode ?? 0), 1000);
  Deno.unrefTimer(exit);
}
