/**
 * TLS to the broker: a private CA (`--mqtt-ca-file`), a client certificate for mutual
 * TLS (`--mqtt-cert-file`, `--mqtt-key-file`) and the development opt-out
 * (`--mqtt-insecure`), turned into MQTT.js's `ca`, `cert`, `key` and
 * `rejectUnauthorized` (which it hands to `tls.connect` for mqtts:// and to the
 * WebSocket for wss://). The files are read and checked here, at start, so a missing
 * file, a key that is not the certificate's or an expired certificate is one line
 * naming the file; a failed handshake is explained by `explainMqttTlsError`. Without a
 * CA file the system's CAs are used. See docs/security.md#tls-to-the-broker.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { describeReadError, FeedlineError } from "../errors.ts";
import { TLS_UNTRUSTED_CODES } from "../tls_untrusted_codes.ts";

/** What the options say (src/cli/mqtt_options.ts), before any file is read. */
export interface MqttTlsSettings {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  insecure?: boolean;
}

/** MQTT.js's TLS options (IClientOptions), for mqtts:// and wss://. */
export interface MqttTlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
}

/** The warning logged at every start with `--mqtt-insecure`. */
export const INSECURE_WARNING = "--mqtt-insecure: the broker's certificate is not verified, so " +
  "anyone on the network path can impersonate the broker; use it only with a development " +
  "broker and a self-signed certificate";

const TLS_PROTOCOLS = new Set(["mqtts:", "ssl:", "wss:"]);

/** Is `url` a TLS broker URL (mqtts://, ssl://, wss://)? */
export function isTlsUrl(url: string): boolean {
  try {
    return TLS_PROTOCOLS.has(new URL(url).protocol);
  } catch {
    return false;
  }
}

function fail(message: string, cause?: unknown): never {
  throw new FeedlineError("CONFIG_INVALID", message, cause ? { cause } : undefined);
}

async function readFile(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    const why = describeReadError(error);
    fail(`cannot read ${flag} "${path}": ${why}`, error);
  }
}

const dateOf = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/** The certificates of a PEM file, each parsed and within its dates. */
function certificatesOf(flag: string, path: string, text: string, now: Date): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) {
    fail(`${flag} "${path}" is not a PEM certificate (no "-----BEGIN CERTIFICATE-----" block)`);
  }
  return blocks.map((block) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (error) {
      fail(`${flag} "${path}" holds a damaged certificate (it does not parse)`, error);
    }
    const subject = cert.subject.replace(/\n/g, ", ");
    const notAfter = new Date(cert.validTo);
    const notBefore = new Date(cert.validFrom);
    if (notAfter < now) {
      fail(`${flag} "${path}": the certificate ${subject} expired on ${dateOf(notAfter)}`);
    }
    if (notBefore > now) {
      fail(
        `${flag} "${path}": the certificate ${subject} is not valid before ${dateOf(notBefore)}`,
      );
    }
    return cert;
  });
}

/**
 * Reads and checks the files the settings name and returns MQTT.js's TLS options
 * (empty for a plain URL without TLS settings). Throws CONFIG_INVALID, one line naming
 * the option and the file, for anything wrong before a connection is tried.
 */
export async function resolveMqttTls(
  url: string,
  settings: MqttTlsSettings,
  now: Date = new Date(),
): Promise<MqttTlsOptions> {
  const { caFile, certFile, keyFile, insecure } = settings;
  let query: URLSearchParams | null = null;
  try {
    query = new URL(url).searchParams;
  } catch { /* the URL schema checked it already */ }
  if (query?.has("rejectUnauthorized")) {
    fail(
      "MQTT_URL: ?rejectUnauthorized is not read; use --mqtt-insecure (MQTT_INSECURE) to skip " +
        "the broker's certificate check, or --mqtt-ca-file for a private CA",
    );
  }
  const given = [
    caFile && "--mqtt-ca-file",
    certFile && "--mqtt-cert-file",
    keyFile && "--mqtt-key-file",
    insecure && "--mqtt-insecure",
  ].filter(Boolean);
  if (given.length === 0) return {};
  if (!isTlsUrl(url)) {
    fail(
      `${given.join(", ")} need${given.length === 1 ? "s" : ""} a TLS broker URL ` +
        `(mqtts:// or wss://), but MQTT_URL is ${new URL(url).protocol}//`,
    );
  }
  if (insecure && caFile) {
    fail("--mqtt-insecure and --mqtt-ca-file contradict each other: give one of them");
  }
  if (certFile && !keyFile) fail(`--mqtt-cert-file "${certFile}" needs --mqtt-key-file (its key)`);
  if (keyFile && !certFile) fail(`--mqtt-key-file "${keyFile}" needs --mqtt-cert-file`);
  const options: MqttTlsOptions = { rejectUnauthorized: !insecure };
  if (caFile) {
    options.ca = await readFile("--mqtt-ca-file", caFile);
    certificatesOf("--mqtt-ca-file", caFile, options.ca, now);
  }
  if (certFile && keyFile) {
    const certText = await readFile("--mqtt-cert-file", certFile);
    const [leaf] = certificatesOf("--mqtt-cert-file", certFile, certText, now);
    const keyText = await readFile("--mqtt-key-file", keyFile);
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyText)) {
      fail(
        `--mqtt-key-file "${keyFile}" is not a PEM private key ` +
          `(no "-----BEGIN ... PRIVATE KEY-----" block)`,
      );
    }
    if (/ENCRYPTED/.test(keyText)) {
      fail(`--mqtt-key-file "${keyFile}" is encrypted; give an unencrypted key (file mode 0600)`);
    }
    let matches: boolean;
    try {
      matches = leaf.checkPrivateKey(createPrivateKey(keyText));
    } catch (error) {
      fail(`--mqtt-key-file "${keyFile}" holds a damaged key (it does not parse)`, error);
    }
    if (!matches) {
      fail(`--mqtt-key-file "${keyFile}" is not the key of --mqtt-cert-file "${certFile}"`);
    }
    options.cert = certText;
    options.key = keyText;
  }
  return options;
}

/**
 * The part of a connect failure's line that says what is wrong with TLS and what to
 * check, or null when `error` is not about TLS.
 */
export function explainMqttTlsError(error: unknown, settings: MqttTlsSettings): string | null {
  const e = error as { code?: string; message?: string };
  const code = String(e?.code ?? "");
  const message = e?.message ?? String(error);
  const ca = settings.caFile
    ? `the CA in --mqtt-ca-file "${settings.caFile}"`
    : "a CA the system trusts (no --mqtt-ca-file given)";
  const caHint = "check --mqtt-ca-file (MQTT_CA_FILE)";
  const mine = settings.certFile ? ` --mqtt-cert-file "${settings.certFile}"` : "";
  // Deno reports an expired broker certificate as "unable to verify the first
  // certificate" too, so the line names both causes.
  if (
    TLS_UNTRUSTED_CODES.has(code) || /unable to verify|self.signed|UnknownIssuer/i.test(message)
  ) {
    return `TLS: the broker's certificate does not verify against ${ca} (${message}): it is ` +
      `signed by another CA, or out of its dates; ${caHint} and the broker certificate's dates` +
      (settings.caFile ? "" : ", or --mqtt-insecure for a self-signed development broker");
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `TLS: the broker's certificate is out of its dates (${message}): renew the broker's ` +
      `certificate; ${caHint}`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `TLS: the broker's certificate does not name this host (${message}): connect by a ` +
      "name or address the certificate lists";
  }
  // Alerts: the broker refused our side of the handshake.
  if (/CERTIFICATE_REQUIRED/i.test(code + message)) {
    return `TLS: the broker requires a client certificate (${message}); set --mqtt-cert-file ` +
      "and --mqtt-key-file (MQTT_CERT_FILE, MQTT_KEY_FILE)";
  }
  if (/ALERT_CERTIFICATE_EXPIRED|CertificateExpired/i.test(code + message)) {
    return `TLS: the broker refused our client certificate${mine} as expired (${message})`;
  }
  if (/ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|DECRYPT_ERROR)/i.test(code)) {
    return `TLS: the broker refused our client certificate${mine} (${message}); check that ` +
      "the broker's cafile signed it";
  }
  if (/ERR_SSL|ERR_TLS|certificate|handshake|\btls\b|\bssl\b/i.test(code + " " + message)) {
    return `TLS handshake failed (${message}); ${caHint}, --mqtt-cert-file and --mqtt-key-file`;
  }
  return null;
}

/**
 * The one line for a failed first connect: the broker, what went wrong, what to check.
 * `url` is already redacted.
 */
export function connectFailureLine(
  url: string,
  error: Error,
  settings: MqttTlsSettings,
  hint = "",
): string {
  const tls = explainMqttTlsError(error, settings);
  return tls
    ? `cannot connect to MQTT broker ${url}: ${tls}`
    : `cannot connect to MQTT broker ${url}: ${error.message}; check MQTT_URL (and ` +
      `MQTT_USERNAME/MQTT_PASSWORD) and that the broker is running${hint}`;
}
