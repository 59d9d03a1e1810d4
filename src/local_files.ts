/**
 * The operator's own files (certificates, keys, secrets) as feedline reads them: why a
 * file cannot be read, in words a person can act on, and which TLS failures mean that a
 * certificate did not verify against the CA file given. Shared by PostgreSQL TLS
 * (src/db/tls.ts), MQTT TLS (src/mqtt/tls.ts) and secret files (src/cli/secrets.ts).
 */

/** Why `Deno.readTextFile` failed: "no such file", "permission denied", ... */
export function describeReadError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a folder";
  return error instanceof Error ? error.message : String(error);
}

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
