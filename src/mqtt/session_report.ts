/**
 * What a reconnect found at the broker, said plainly (docs/delivery.md, "Held messages
 * across a reconnect" and "What the broker must be configured for"): the session resumed
 * (held messages are written once, their copies matched), or no session where one was
 * expected (what the broker held for serve, and anything published meanwhile, is lost).
 */
import type { Logger } from "../log.ts";
import type { HeldCopies } from "./held_copies.ts";

/** What the report needs. */
export interface SessionReportOptions<C> {
  heldCopies: HeldCopies<C>;
  log: Logger;
  clientId: string;
  protocolVersion: 4 | 5;
  sessionExpirySec: number;
  /** A session was lost (after it was logged). */
  onSessionLost?(): void;
}

/** Reports each reconnect's session; told when a connection is lost. */
export interface SessionReport<C> {
  connectionLost(): void;
  /** A reconnect's CONNACK on `connection`, with its session present or not. */
  reconnected(sessionPresent: boolean, connection: C): void;
}

/** Creates the report of one client. */
export function createSessionReport<C>(opts: SessionReportOptions<C>): SessionReport<C> {
  const { heldCopies, log } = opts;
  /** When the last connection was lost. */
  let lostAt = 0;
  // MQTT 5 with a session expiry of 0 asks the broker to forget the session at once.
  const sessionExpected = opts.protocolVersion === 4 || opts.sessionExpirySec > 0;

  /** Held messages of the last connection: written once, their copies matched. */
  const resumed = (connection: C) => {
    const earlier = heldCopies.countEarlier(connection);
    if (earlier.held + earlier.written === 0) return;
    log.info("session resumed; messages held from the last connection are written once", {
      held: earlier.held,
      writtenUnacknowledged: earlier.written,
      note: "a copy the broker sends again is matched to its original (discarded{redelivered})",
    });
  };

  /**
   * The broker had no session for us: what it held for us, and whatever was published
   * while we were away, is gone. Held messages are written all the same; no copy of them
   * will come.
   */
  const lost = (connection: C) => {
    const earlier = heldCopies.forgetEarlier(connection);
    if (!sessionExpected) return;
    const awayMs = lostAt > 0 ? Date.now() - lostAt : 0;
    const expired = opts.protocolVersion === 5 && awayMs >= opts.sessionExpirySec * 1000;
    log.warn(
      "the broker had no session for this client when serve reconnected: what it held for " +
        "serve, and anything published while serve was away, is lost; " +
        (expired
          ? `serve was away longer than --session-expiry (${opts.sessionExpirySec} s)`
          : "the broker lost its state (restarted without persistence: Mosquitto " +
            "`persistence true`) or ended the session itself (Mosquitto " +
            "`persistent_client_expiration`)") +
        "; subscribing again",
      {
        clientId: opts.clientId,
        awayMs,
        awaySince: lostAt > 0 ? new Date(lostAt).toISOString() : null,
        heldMessages: earlier.held + earlier.written, // written all the same
      },
    );
    opts.onSessionLost?.();
  };

  return {
    connectionLost() {
      lostAt = Date.now();
    },
    reconnected(sessionPresent, connection) {
      if (sessionPresent) resumed(connection);
      else lost(connection);
    },
  };
}
