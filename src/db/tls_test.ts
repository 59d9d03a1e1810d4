import assert from "node:assert/strict";
import { FeedlineError } from "../errors.ts";
import { resolvePgTls, sslSettings } from "./tls.ts";

const URL_ = "postgres://u:pw@db.example:5432/iot";
const NO_HOME = undefined;

Deno.test("sslSettings(): libpq's default is prefer; the URL wins over PGSSL* variables", () => {
  assert.equal(sslSettings(URL_, {}, NO_HOME).mode, "prefer");
  assert.equal(sslSettings(URL_, { PGSSLMODE: "require" }, NO_HOME).mode, "require");
  const s = sslSettings(`${URL_}?sslmode=verify-ca&sslrootcert=/a.crt`, {
    PGSSLMODE: "disable",
    PGSSLROOTCERT: "/b.crt",
  }, NO_HOME);
  assert.equal(s.mode, "verify-ca");
  assert.equal(s.rootCert, "/a.crt");
});

Deno.test("sslSettings(): ssl* parameters leave the URL, others stay", () => {
  const s = sslSettings(
    `${URL_}?sslmode=verify-full&sslrootcert=/ca.crt&sslcert=/c.crt&sslkey=/c.key` +
      `&sslpassword=x&application_name=feedline&ssl_min_protocol_version=TLSv1.3`,
    {},
    NO_HOME,
  );
  assert.equal(s.url, `${URL_}?application_name=feedline`);
  assert.deepEqual([s.cert, s.key, s.password, s.minVersion], [
    "/c.crt",
    "/c.key",
    "x",
    "TLSv1.3",
  ]);
});

Deno.test("sslSettings(): bad values and unsupported parameters are refused by name", () => {
  const bad = (url: string, env = {}) =>
    assert.throws(
      () => sslSettings(url, env, NO_HOME),
      (e: unknown) => e instanceof FeedlineError && e.code === "CONFIG_INVALID",
    );
  bad(`${URL_}?sslmode=verify`);
  bad(URL_, { PGSSLMODE: "on" });
  bad(`${URL_}?sslcrl=/crl.pem`);
  bad(`${URL_}?gssencmode=require`);
  bad(`${URL_}?ssl_min_protocol_version=SSLv3`);
  bad(`${URL_}?sslrootcert=system&sslmode=require`);
  assert.equal(sslSettings(`${URL_}?gssencmode=prefer`, {}, NO_HOME).url, URL_);
  assert.equal(sslSettings(`${URL_}?sslrootcert=system`, {}, NO_HOME).mode, "verify-full");
});

Deno.test("sslSettings(): the ~/.postgresql defaults", () => {
  const s = sslSettings(URL_, {}, "/home/me");
  assert.equal(s.rootCert, "/home/me/.postgresql/root.crt");
  assert.equal(s.rootCertDefault, true);
  assert.equal(s.cert, "/home/me/.postgresql/postgresql.crt");
  assert.equal(s.certDefault, true);
  assert.equal(sslSettings(`${URL_}?sslmode=disable`, {}, "/home/me").rootCert, null);
});

Deno.test("resolvePgTls(): postgres.js options for each mode", async () => {
  const home = await Deno.makeTempDir();
  try {
    const plain = await resolvePgTls(`${URL_}?sslmode=disable`, {}, home);
    assert.equal(plain.ssl, false);
    assert.equal((await resolvePgTls(`${URL_}?sslmode=allow`, {}, home)).ssl, false);
    assert.equal((await resolvePgTls(URL_, {}, home)).ssl, "prefer");
    const require = await resolvePgTls(`${URL_}?sslmode=require`, {}, home);
    assert.deepEqual(require.ssl, { rejectUnauthorized: false });
    const system = await resolvePgTls(`${URL_}?sslrootcert=system`, {}, home);
    assert.deepEqual(system.ssl, { rejectUnauthorized: true });
    assert.equal(system.url, URL_);
    // No CA file and none under ~/.postgresql: verify-* cannot work.
    await assert.rejects(
      resolvePgTls(`${URL_}?sslmode=verify-ca`, {}, home),
      /sslmode=verify-ca needs the CA/,
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("resolvePgTls(): files are checked, ~/.postgresql/root.crt makes require verify", async () => {
  const home = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${home}/.postgresql`);
    const garbage = `${home}/garbage.crt`;
    await Deno.writeTextFile(garbage, "hello\n");
    await assert.rejects(
      resolvePgTls(`${URL_}?sslmode=verify-full&sslrootcert=${garbage}`, {}, home),
      {
        message: `sslrootcert "${garbage}" is not a PEM certificate (no "-----BEGIN ` +
          `CERTIFICATE-----" block)`,
      },
    );
    const damaged = `${home}/.postgresql/root.crt`;
    await Deno.writeTextFile(
      damaged,
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    // The default root.crt exists: require turns into verify-ca and reads it.
    await assert.rejects(
      resolvePgTls(`${URL_}?sslmode=require`, {}, home),
      /sslrootcert ".*root\.crt" holds a damaged certificate/,
    );
    // prefer never verifies, so it does not read it.
    assert.equal((await resolvePgTls(URL_, {}, home)).ssl, "prefer");
    await assert.rejects(
      resolvePgTls(`${URL_}?sslmode=require&sslcert=${home}/none.crt&sslkey=x`, {}, home),
      { message: `cannot read sslcert "${home}/none.crt": no such file` },
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
