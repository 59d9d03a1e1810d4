import assert from "node:assert/strict";
import { databaseIdentity, defaultClientId } from "./client_id.ts";
import { parseServeArgs } from "./serve_options.ts";

Deno.test("one folder against two databases gets two client ids (two broker sessions)", () => {
  const id = (url: string) =>
    parseServeArgs(["--data-dir", "/srv/f/.feedline"], { DATABASE_URL: url }).clientId;
  const a = id("postgres://feedline:pw@db1.example:5432/iot");
  assert.notEqual(a, id("postgres://feedline:pw@db2.example:5432/iot"));
  assert.notEqual(a, id("postgres://feedline:pw@db1.example:5432/iot_staging"));
  // The same database: another password, sslmode or an explicit default port change nothing.
  assert.equal(a, id("postgres://feedline:other@db1.example/iot?sslmode=require"));
  assert.equal(a, id("postgres://feedline@DB1.example:5432/iot"));
  // The embedded database lives in the data dir: the id earlier releases used, kept.
  assert.equal(
    parseServeArgs(["--data-dir", "/srv/f/.feedline"], {}).clientId,
    defaultClientId("/srv/f/.feedline"),
  );
  assert.notEqual(a, defaultClientId("/srv/f/.feedline"));
});

Deno.test("databaseIdentity() keeps user, host, port and database, never the password", () => {
  assert.equal(databaseIdentity("postgres://u:s3cret@H:6432/d?sslmode=verify-full"), "u@h:6432/d");
  assert.equal(databaseIdentity("postgres://u@h"), "u@h:5432/u");
  assert.equal(databaseIdentity("postgres:///d", { PGHOST: "/run/pg" }), "@/run/pg:5432/d");
  assert.equal(databaseIdentity(undefined), null);
  assert.doesNotMatch(databaseIdentity("postgres://u:s3cret@h1,h2/d?x=1") ?? "", /s3cret|x=1/);
});
