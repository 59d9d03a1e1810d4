/**
 * TLS to PostgreSQL the libpq way (docs/security.md#tls-to-postgresql), against a private
 * cluster with `ssl=on` and certificates made here with openssl (test/support/tls.ts).
 */
import assert from "node:assert/strict";
import { openDatabase } from "../src/db/database.ts";
import { FeedlineError } from "../src/errors.ts";
import { PG_TLS_MISSING, startTlsPostgres, type TlsPostgres } from "./support/tls.ts";

const ignore = PG_TLS_MISSING !== null;
if (ignore) console.warn(`pg_tls_test skipped: ${PG_TLS_MISSING}`);

/** Opens with `url` and no PGSSL* variables (and no ~/.postgresql), returns whether TLS is on. */
async function sslOf(url: string, env: Record<string, string> = {}): Promise<boolean> {
  const db = await openDatabase({
    url,
    dataDir: "/nonexistent",
    embeddedPort: 0,
    poolSize: 1,
    migrate: false,
    env: { HOME: "/nonexistent", ...env },
  });
  try {
    const [row] = await db.sql<{ ssl: boolean }[]>`
      select ssl from pg_stat_ssl where pid = pg_backend_pid()`;
    return row.ssl;
  } finally {
    await db.close();
  }
}

async function openError(url: string, env: Record<string, string> = {}): Promise<FeedlineError> {
  try {
    await sslOf(url, env);
  } catch (error) {
    assert.ok(error instanceof FeedlineError, `not a FeedlineError: ${error}`);
    return error;
  }
  throw new Error("connected, but should have failed");
}

Deno.test({
  name: "PostgreSQL TLS: every sslmode, CA files and client certificates, libpq style",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    let pg: TlsPostgres | null = null;
    try {
      pg = await startTlsPostgres();
      const base = pg.url();
      const ca = pg.pki.caCert;

      await t.step("verify-full with the right CA connects over TLS", async () => {
        assert.equal(await sslOf(`${base}?sslmode=verify-full&sslrootcert=${ca}`), true);
        // By host name too: the certificate names localhost.
        const byName = base.replace("127.0.0.1", "localhost");
        assert.equal(await sslOf(`${byName}?sslmode=verify-full&sslrootcert=${ca}`), true);
      });

      await t.step("the PGSSL* variables do the same; the URL wins over them", async () => {
        assert.equal(
          await sslOf(base, { PGSSLMODE: "verify-full", PGSSLROOTCERT: ca }),
          true,
        );
        assert.equal(
          await sslOf(`${base}?sslmode=disable`, { PGSSLMODE: "verify-full", PGSSLROOTCERT: ca }),
          false,
        );
      });

      await t.step("a wrong CA fails with one line that names sslrootcert", async () => {
        for (const mode of ["verify-full", "verify-ca", "require"]) {
          const error = await openError(
            `${base}?sslmode=${mode}&sslrootcert=${pg!.pki.otherCaCert}`,
          );
          assert.equal(error.code, "DATABASE_UNREACHABLE");
          assert.match(error.message, /certificate verify failed/);
          assert.match(error.message, /check sslrootcert/);
          assert.ok(error.message.includes(pg!.pki.otherCaCert), error.message);
          assert.ok(!error.message.includes("\n"), error.message);
        }
      });

      await t.step("verify-full checks the host name, verify-ca does not", async () => {
        // 127.0.0.2 reaches nothing, so give the server's address under a name the
        // certificate lacks: 127.0.0.1 is in it, "127.1" is the same address spelled
        // differently and is not.
        const url = `postgres://postgres@127.1:${pg!.port}/postgres?sslrootcert=${ca}`;
        assert.equal(await sslOf(`${url}&sslmode=verify-ca`), true);
        const error = await openError(`${url}&sslmode=verify-full`);
        assert.match(error.message, /certificate verify failed/);
        assert.match(error.message, /verify-ca/);
      });

      await t.step("disable is plain text; no sslmode is libpq's prefer: TLS", async () => {
        assert.equal(await sslOf(`${base}?sslmode=disable`), false);
        assert.equal(await sslOf(base), true);
        assert.equal(await sslOf(`${base}?sslmode=require`), true);
      });

      await t.step("a client certificate logs in as its CN (hostssl ... cert)", async () => {
        const [cert, key] = await pg!.pki.client("certuser");
        const url = `${pg!.url("certuser")}?sslmode=verify-full&sslrootcert=${ca}`;
        assert.equal(await sslOf(`${url}&sslcert=${cert}&sslkey=${key}`), true);
        assert.equal(await sslOf(url, { PGSSLCERT: cert, PGSSLKEY: key }), true);
        const error = await openError(url);
        assert.match(error.message, /: connection requires a valid client certificate \(28000\)/);
      });

      await t.step("missing and wrong files: one line naming the file", async () => {
        const missing = await openError(`${base}?sslmode=verify-full&sslrootcert=/nope/ca.crt`);
        assert.equal(missing.code, "CONFIG_INVALID");
        assert.equal(missing.message, `cannot read sslrootcert "/nope/ca.crt": no such file`);
        const notCert = await openError(
          `${base}?sslmode=verify-full&sslrootcert=${pg!.pki.serverKey}`,
        );
        assert.match(notCert.message, /^sslrootcert ".*server\.key" is not a PEM certificate/);
        const noRoot = await openError(`${base}?sslmode=verify-full`);
        assert.match(noRoot.message, /sslmode=verify-full needs the CA .* set sslrootcert/);
      });
    } finally {
      await pg?.close();
    }
  },
});
