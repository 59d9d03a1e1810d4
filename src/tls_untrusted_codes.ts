/**
 * The TLS verification failures that mean a certificate did not verify against the CA
 * given (a private CA file, or the system's), by the codes Node (and Deno's node:tls)
 * give them. Shared by PostgreSQL TLS (src/db/tls.ts) and MQTT TLS (src/mqtt/tls.ts).
 */

/** TLS verification failures, by the codes Node (and Deno's node:tls) give them. */
export const TLS_UNTRUSTED_CODES: ReadonlySet<string> = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
]);
