/**
 * TLS fixtures for tests: certificates made with `/usr/bin/openssl` in a temp folder, and
 * a private PostgreSQL cluster (Debian's `initdb` / `pg_ctl`, run as the `postgres` user
 * because PostgreSQL refuses to run as root) on a free loopback port with `ssl=on`.
 *
 * @module
 */
import { freePort } from "./broker.ts";

const OPENSSL = "/usr/bin/openssl";
const PG_BIN = "/usr/lib/postgresql/15/bin";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Why the private TLS PostgreSQL cannot run here, or null when it can. */
export const PG_TLS_MISSING: string | null = (() => {
  if (!exists(OPENSSL)) return `${OPENSSL} is not installed (apt-get install openssl)`;
  if (!exists(`${PG_BIN}/initdb`)) return `${PG_BIN}/initdb is not installed (postgresql-15)`;
  if (Deno.build.os !== "linux") return "needs Linux (runuser, initdb)";
  return null;
})();

/** Is openssl installed? */
export const HAVE_OPENSSL = exists(OPENSSL);

async function run(cmd: string, args: string[], what: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${what} failed (${cmd} ${args.join(" ")}):\n${text}`);
  return text;
}

/** A certificate authority and certificates it signed, as PEM files in `dir`. */
export interface TestPki {
  dir: string;
  /** CA certificate. */
  caCert: string;
  /** Another CA, which signed nothing we use: "the wrong CA". */
  otherCaCert: string;
  /** Server certificate for `localhost` and 127.0.0.1, and its key. */
  serverCert: string;
  serverKey: string;
  /** Issues a client certificate with CN=`name`; returns [cert, key] paths. */
  client(name: string): Promise<[string, string]>;
  /**
   * Issues a certificate signed by the CA that expired in 2020 (`openssl ca` with
   * -startdate/-enddate: OpenSSL 3.0's `x509 -days` cannot go back in time), for
   * `localhost` and 127.0.0.1 too, so it serves as a client or a server certificate.
   */
  expired(name: string): Promise<[string, string]>;
}

/** Makes a CA, a wrong CA and a server certificate in a new temp folder. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "feedline-pki-" });
  const p = (name: string) => `${dir}/${name}`;
  async function ca(name: string) {
    await run(OPENSSL, [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.crt`),
    ], `making CA ${name}`);
  }
  async function issue(name: string, cn: string, san?: string) {
    await run(OPENSSL, [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${cn}`,
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.csr`),
    ], `making key ${name}`);
    const ext = p(`${name}.ext`);
    await Deno.writeTextFile(
      ext,
      [
        "basicConstraints=CA:FALSE",
        "keyUsage=digitalSignature,keyEncipherment",
        ...(san ? [`subjectAltName=${san}`] : []),
      ].join("\n") + "\n",
    );
    await run(OPENSSL, [
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p("ca.crt"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      ext,
      "-out",
      p(`${name}.crt`),
    ], `signing ${name}`);
    await Deno.chmod(p(`${name}.key`), 0o600);
  }
  await ca("ca");
  await ca("otherca");
  await issue("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  return {
    dir,
    caCert: p("ca.crt"),
    otherCaCert: p("otherca.crt"),
    serverCert: p("server.crt"),
    serverKey: p("server.key"),
    async client(name) {
      await issue(`client-${name}`, name);
      return [p(`client-${name}.crt`), p(`client-${name}.key`)];
    },
    async expired(name) {
      const base = p(`expired-${name}`);
      await run(OPENSSL, [
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        `/CN=${name}`,
        "-keyout",
        `${base}.key`,
        "-out",
        `${base}.csr`,
      ], `making key expired-${name}`);
      await Deno.mkdir(`${base}.db`);
      await Deno.writeTextFile(`${base}.db/index.txt`, "");
      await Deno.writeTextFile(`${base}.db/serial`, "1000\n");
      await Deno.writeTextFile(
        `${base}.cnf`,
        [
          "[ca]",
          "default_ca = test",
          "[test]",
          `database = ${base}.db/index.txt`,
          `new_certs_dir = ${base}.db`,
          `serial = ${base}.db/serial`,
          "default_md = sha256",
          "policy = any",
          "x509_extensions = ext",
          "[any]",
          "commonName = supplied",
          "[ext]",
          "basicConstraints = CA:FALSE",
          "keyUsage = digitalSignature,keyEncipherment",
          "subjectAltName = DNS:localhost,IP:127.0.0.1",
        ].join("\n") + "\n",
      );
      await run(OPENSSL, [
        "ca",
        "-batch",
        "-notext",
        "-config",
        `${base}.cnf`,
        "-cert",
        p("ca.crt"),
        "-keyfile",
        p("ca.key"),
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
        "-in",
        `${base}.csr`,
        "-out",
        `${base}.crt`,
      ], `signing expired-${name}`);
      await Deno.chmod(`${base}.key`, 0o600);
      return [`${base}.crt`, `${base}.key`];
    },
  };
}

/** The password of the cluster's `pwuser`. */
export const PWUSER_PASSWORD = "pw-user-right-one";

/** A private PostgreSQL cluster with TLS on. */
export interface TlsPostgres {
  port: number;
  pki: TestPki;
  /** `postgres://USER@127.0.0.1:PORT/postgres`, no sslmode. */
  url(user?: string): string;
  close(): Promise<void>;
}

/**
 * Creates a cluster with `initdb` in a temp folder (owned by `postgres`), TLS on with
 * a certificate from `makeTestPki`, listening on 127.0.0.1 only. `trust` for every
 * loopback connection (TLS or not), except the user `certuser`, who must present a
 * client certificate with CN=certuser over TLS, and `pwuser`, who logs in with the
 * password `PWUSER_PASSWORD`.
 */
export async function startTlsPostgres(): Promise<TlsPostgres> {
  if (PG_TLS_MISSING) throw new Error(PG_TLS_MISSING);
  const pki = await makeTestPki();
  const dir = await Deno.makeTempDir({ prefix: "feedline-pgtls-" });
  const data = `${dir}/data`;
  const asRoot = Deno.uid() === 0;
  // PostgreSQL refuses to run as root: hand the folders to `postgres` and run as it.
  const as = (cmd: string, args: string[]) =>
    asRoot ? run("/usr/sbin/runuser", ["-u", "postgres", "--", cmd, ...args], cmd) : run(
      cmd,
      args,
      cmd,
    );
  const serverCert = `${dir}/server.crt`;
  const serverKey = `${dir}/server.key`;
  await Deno.copyFile(pki.serverCert, serverCert);
  await Deno.copyFile(pki.serverKey, serverKey);
  await Deno.copyFile(pki.caCert, `${dir}/ca.crt`);
  await Deno.chmod(serverKey, 0o600);
  if (asRoot) {
    await run("/usr/bin/chown", ["-R", "postgres:postgres", dir], "chown");
    // Tests read the PKI folder as root; the server only needs its own copies.
  }
  await as(`${PG_BIN}/initdb`, [
    "-D",
    data,
    "-A",
    "trust",
    "-U",
    "postgres",
    "--no-sync",
    "--no-instructions",
  ]);
  await Deno.writeTextFile(
    `${data}/pg_hba.conf`,
    [
      "local all all trust",
      "hostssl all certuser 127.0.0.1/32 cert",
      "host all certuser 127.0.0.1/32 reject",
      "host all pwuser 127.0.0.1/32 scram-sha-256",
      "host all all 127.0.0.1/32 trust",
    ].join("\n") + "\n",
  );
  const port = await freePort();
  const opts = [
    `-p ${port}`,
    `-k ${dir}`,
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c ssl=on",
    `-c ssl_cert_file=${serverCert}`,
    `-c ssl_key_file=${serverKey}`,
    `-c ssl_ca_file=${dir}/ca.crt`,
  ].join(" ");
  const stop = () =>
    as(`${PG_BIN}/pg_ctl`, ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => "");
  try {
    await as(`${PG_BIN}/pg_ctl`, ["-D", data, "-o", opts, "-l", `${dir}/log`, "-w", "start"]);
    await as(`${PG_BIN}/psql`, [
      "-h",
      dir,
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      "postgres",
      "-qc",
      "create user certuser; create user root superuser; " +
      `create user pwuser password '${PWUSER_PASSWORD}';`,
    ]);
  } catch (error) {
    const log = await Deno.readTextFile(`${dir}/log`).catch(() => "(no log)");
    await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.remove(pki.dir, { recursive: true }).catch(() => {});
    throw new Error(`${(error as Error).message}\nserver log:\n${log}`);
  }
  return {
    port,
    pki,
    url: (user = "postgres") => `postgres://${user}@127.0.0.1:${port}/postgres`,
    async close() {
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(pki.dir, { recursive: true }).catch(() => {});
    },
  };
}
