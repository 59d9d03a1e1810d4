/**
 * TLS to PostgreSQL the libpq way: `sslmode`, `sslrootcert`, `sslcert`, `sslkey` (and
 * `sslpassword`, `ssl_min_protocol_version`, `ssl_max_protocol_version`) in the
 * connection URL, or the `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` variables,
 * with libpq's defaults (`prefer`; `~/.postgresql/root.crt`, `postgresql.crt`,
 * `postgresql.key`), translated into postgres.js's `ssl` option. The ssl* parameters are
 * taken out of the URL handed to postgres.js, which would send them to the server as
 * settings. Certificate files are read here, so a missing or wrong file is one line
 * naming it; a failed verification is explained by `explainTlsError`. See
 * docs/security.md#tls-to-postgresql.
 */
import type { ConnectionOptions } from "node:tls";
import { X509Certificate } from "node:crypto";
import { describeReadError, FeedlineError } from "../errors.ts";
import { TLS_UNTRUSTED_CODES } from "../tls_untrusted_codes.ts";

/** libpq's sslmode values, weakest first. */
export const SSL_MODES = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
] as const;
export type SslMode = typeof SSL_MODES[number];

/** What postgres.js gets: the URL without ssl* parameters and its `ssl` option. */
export interface PgTls {
  url: string;
  ssl: false | "prefer" | ConnectionOptions;
  mode: SslMode;
  /** The CA file used to verify the server, if any ("system": the system's roots). */
  rootCert: string | null;
  /** One line for the log: `sslmode=verify-full, sslrootcert=/etc/ca.crt`. */
  summary: string;
}

/** URL parameters read here (and removed from the URL). */
const SSL_PARAMS = [
  "sslmode",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "sslpassword",
  "ssl_min_protocol_version",
  "ssl_max_protocol_version",
  // libpq ignores it since PostgreSQL 14; SNI is always sent for host names.
  "sslcompression",
  "sslsni",
] as const;
/** libpq parameters feedline cannot honour: refused rather than silently ignored. */
const UNSUPPORTED = ["sslcrl", "sslcrldir", "sslcertmode", "requiressl", "gssencmode"];
const TLS_VERSIONS: Record<string, ConnectionOptions["minVersion"]> = {
  "TLSv1": "TLSv1",
  "TLSv1.1": "TLSv1.1",
  "TLSv1.2": "TLSv1.2",
  "TLSv1.3": "TLSv1.3",
};

/** The ssl settings of a URL and environment, before any file is read. Pure. */
export function sslSettings(
  url: string,
  env: Record<string, string | undefined>,
  home: string | undefined,
) {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FeedlineError("CONFIG_INVALID", "DATABASE_URL is not a valid URL");
  }
  const param = (name: string) => {
    const v = u.searchParams.get(name);
    return v === null || v === "" ? undefined : v;
  };
  const envOf = (name: string) => (env[name] === "" ? undefined : env[name]);
  for (const name of UNSUPPORTED) {
    if (u.searchParams.has(name) && !(name === "gssencmode" && param(name) !== "require")) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `DATABASE_URL: feedline does not support the libpq parameter ${name}; remove it`,
      );
    }
  }
  u.searchParams.delete("gssencmode");
  const rawMode = param("sslmode") ?? envOf("PGSSLMODE");
  let rootCert = param("sslrootcert") ?? envOf("PGSSLROOTCERT");
  const explicitMode = rawMode !== undefined;
  if (rawMode !== undefined && !(SSL_MODES as readonly string[]).includes(rawMode)) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `sslmode must be one of ${SSL_MODES.join(", ")} (got ${JSON.stringify(rawMode)})`,
    );
  }
  let mode = (rawMode ?? "prefer") as SslMode;
  if (rootCert === "system") {
    // libpq 16: sslrootcert=system means verify-full, and a weaker mode is an error.
    if (!explicitMode) mode = "verify-full";
    else if (mode !== "verify-full") {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `sslrootcert=system needs sslmode=verify-full (got sslmode=${mode})`,
      );
    }
  }
  const dot = home ? `${home.replace(/\/$/, "")}/.postgresql` : null;
  let rootCertDefault = false;
  if (rootCert === undefined && dot && mode !== "disable" && mode !== "allow") {
    rootCert = `${dot}/root.crt`;
    rootCertDefault = true;
  }
  let cert = param("sslcert") ?? envOf("PGSSLCERT");
  let key = param("sslkey") ?? envOf("PGSSLKEY");
  const certDefault = cert === undefined;
  if (cert === undefined && dot) cert = `${dot}/postgresql.crt`;
  if (key === undefined && dot) key = `${dot}/postgresql.key`;
  const versions = (["ssl_min_protocol_version", "ssl_max_protocol_version"] as const).map(
    (name) => {
      const v = param(name);
      if (v !== undefined && !(v in TLS_VERSIONS)) {
        throw new FeedlineError(
          "CONFIG_INVALID",
          `${name} must be one of ${Object.keys(TLS_VERSIONS).join(", ")} (got ${
            JSON.stringify(v)
          })`,
        );
      }
      return v === undefined ? undefined : TLS_VERSIONS[v];
    },
  );
  const password = param("sslpassword");
  for (const name of SSL_PARAMS) u.searchParams.delete(name);
  return {
    url: u.href,
    mode,
    rootCert: rootCert ?? null,
    /** The root certificate was not asked for: use it only if it exists (libpq). */
    rootCertDefault,
    cert: cert ?? null,
    key: key ?? null,
    /** The client certificate was not asked for: use it only if it exists (libpq). */
    certDefault,
    password,
    minVersion: versions[0],
    maxVersion: versions[1],
  };
}

async function readPem(
  what: string,
  path: string,
  kind: "certificate" | "key",
): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const why = describeReadError(error);
    throw new FeedlineError("CONFIG_INVALID", `cannot read ${what} "${path}": ${why}`, {
      cause: error,
    });
  }
  if (kind === "certificate") {
    const blocks = text.match(
      /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g,
    );
    if (!blocks) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `${what} "${path}" is not a PEM certificate (no "-----BEGIN CERTIFICATE-----" block)`,
      );
    }
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch {
        throw new FeedlineError(
          "CONFIG_INVALID",
          `${what} "${path}" holds a damaged certificate (it does not parse)`,
        );
      }
    }
  } else if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `${what} "${path}" is not a PEM private key (no "-----BEGIN ... PRIVATE KEY-----" block)`,
    );
  }
  return text;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves the TLS settings of `url` (and `env`) into postgres.js options, reading the
 * certificate files. Throws CONFIG_INVALID naming the parameter or file at fault.
 */
export async function resolvePgTls(
  url: string,
  env: Record<string, string | undefined>,
  home: string | undefined = env.HOME,
): Promise<PgTls> {
  const s = sslSettings(url, env, home);
  let mode = s.mode;
  let rootCert = s.rootCert;
  if (rootCert && rootCert !== "system" && s.rootCertDefault && !(await exists(rootCert))) {
    if (mode === "verify-ca" || mode === "verify-full") {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `sslmode=${mode} needs the CA that signed the server's certificate: set sslrootcert ` +
          `(or PGSSLROOTCERT) to its file, or sslrootcert=system for the system's CAs ` +
          `(the default ${rootCert} does not exist)`,
      );
    }
    rootCert = null;
  }
  if (mode === "disable" || mode === "allow") {
    // libpq's allow tries plain text first, and that is what the server gets here.
    return { url: s.url, ssl: false, mode, rootCert: null, summary: `sslmode=${mode}` };
  }
  // libpq: with a root certificate, require verifies the chain as verify-ca does.
  if (mode === "require" && rootCert) mode = "verify-ca";
  let cert = s.cert;
  let key = s.key;
  if (s.certDefault && cert && !(mode !== "prefer" && await exists(cert))) {
    cert = null;
    key = null;
  }
  const options: ConnectionOptions = {};
  if (cert) {
    options.cert = await readPem("sslcert", cert, "certificate");
    if (!key) {
      throw new FeedlineError("CONFIG_INVALID", `sslcert "${cert}" needs sslkey (its key)`);
    }
    const keyText = await readPem("sslkey", key, "key");
    if (/ENCRYPTED/.test(keyText) && !s.password) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `sslkey "${key}" is encrypted: give its passphrase as sslpassword in DATABASE_URL`,
      );
    }
    options.key = keyText;
    if (s.password) options.passphrase = s.password;
  }
  if (s.minVersion) options.minVersion = s.minVersion;
  if (s.maxVersion) options.maxVersion = s.maxVersion;
  const parts = [`sslmode=${mode}`];
  if (mode === "prefer" && !cert && !s.minVersion && !s.maxVersion) {
    return { url: s.url, ssl: "prefer", mode, rootCert: null, summary: parts.join(", ") };
  }
  if (mode === "prefer" || mode === "require") {
    options.rejectUnauthorized = false;
  } else {
    options.rejectUnauthorized = true;
    if (rootCert && rootCert !== "system") {
      options.ca = await readPem("sslrootcert", rootCert, "certificate");
    }
    if (mode === "verify-ca") options.checkServerIdentity = () => undefined;
    parts.push(`sslrootcert=${rootCert}`);
  }
  if (cert) parts.push(`sslcert=${cert}`);
  return { url: s.url, ssl: options, mode, rootCert, summary: parts.join(", ") };
}

/**
 * One line for a TLS failure while connecting, naming what to check, or null when
 * `error` is not about TLS.
 */
export function explainTlsError(error: unknown, tls: PgTls): string | null {
  const e = error as { code?: string; message?: string };
  const code = e?.code ?? "";
  const message = e?.message ?? String(error);
  const ca = tls.rootCert === "system" ? "the system's CAs" : `sslrootcert "${tls.rootCert}"`;
  if (TLS_UNTRUSTED_CODES.has(code) || /unable to verify|self.signed|unknown ca/i.test(message)) {
    return `certificate verify failed (${message}): the server's certificate is not signed ` +
      `by ${ca}; check sslrootcert`;
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `certificate verify failed (${message}): check the server's certificate dates`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `certificate verify failed (${message}): connect by a host name the server's ` +
      `certificate names, or use sslmode=verify-ca to check only the CA`;
  }
  // The server's own refusals (a SQLSTATE, e.g. 28000 "requires a valid client
  // certificate") are already clear.
  const fromServer = /^[0-9A-Z]{5}$/.test(code) && /\d/.test(code);
  if (!fromServer && /certificate|tls|ssl/i.test(message) && tls.mode !== "prefer") {
    return `TLS handshake failed (${message}); check sslmode, sslrootcert, sslcert and sslkey`;
  }
  return null;
}
