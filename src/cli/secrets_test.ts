import assert from "node:assert/strict";
import { z } from "zod";
import { FeedlineError } from "../errors.ts";
import { option } from "./options.ts";
import {
  commandLineSecretWarnings,
  formatConfig,
  printConfigOptions,
  readSecretFiles,
  redactSecrets,
} from "./secrets.ts";

Deno.test("readSecretFiles(): X_FILE fills X, trailing newline trimmed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/db`, "postgres://u:p4ss@h/db\n");
    await Deno.writeTextFile(`${dir}/pw`, "  spaced pw \r\n");
    const { env, fromFile } = await readSecretFiles({
      DATABASE_URL_FILE: `${dir}/db`,
      MQTT_PASSWORD_FILE: `${dir}/pw`,
      OTHER: "x",
    });
    assert.equal(env.DATABASE_URL, "postgres://u:p4ss@h/db");
    assert.equal(env.MQTT_PASSWORD, "  spaced pw ");
    assert.equal(env.OTHER, "x");
    assert.deepEqual(fromFile, { DATABASE_URL: `${dir}/db`, MQTT_PASSWORD: `${dir}/pw` });

    const fails = (env: Record<string, string>, message: string) =>
      assert.rejects(
        readSecretFiles(env),
        (e: unknown) =>
          e instanceof FeedlineError && e.code === "CONFIG_INVALID" &&
          e.message === message,
      );
    await fails(
      { MQTT_PASSWORD_FILE: `${dir}/none` },
      `cannot read MQTT_PASSWORD_FILE "${dir}/none": no such file`,
    );
    await fails(
      { DATABASE_URL_FILE: `${dir}/db`, DATABASE_URL: "postgres://h/db" },
      "both DATABASE_URL and DATABASE_URL_FILE are set; set one of them",
    );
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    await fails(
      { MQTT_PASSWORD_FILE: `${dir}/empty` },
      `MQTT_PASSWORD_FILE "${dir}/empty" is empty`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("commandLineSecretWarnings(): passwords in flags, not names or hosts", () => {
  assert.deepEqual(commandLineSecretWarnings(["--mqtt-username", "feedline", "--qos", "1"]), []);
  assert.deepEqual(commandLineSecretWarnings(["--database-url", "postgres://u@h/db"]), []);
  const warnings = commandLineSecretWarnings([
    "--mqtt-password=pw",
    "--database-url",
    "postgres://u:pw@h/db",
    "--mqtt-url",
    "mqtt://u:pw@h",
  ]);
  assert.equal(warnings.length, 3);
  assert.match(warnings[0], /--mqtt-password .* \(ps\); use MQTT_PASSWORD or MQTT_PASSWORD_FILE/);
  assert.match(warnings[1], /--database-url holds a password.*DATABASE_URL_FILE/);
  assert.match(warnings[2], /--mqtt-url holds a password.*MQTT_URL_FILE/);
});

Deno.test("redactSecrets(): masks the secrets of flags and environment in any text", () => {
  const text = redactSecrets(
    "failed: p%40ss and flagpw and envpw and tok3n",
    ["--mqtt-password", "flagpw"],
    { DATABASE_URL: "postgres://u:p%40ss@h/db?token=tok3n", MQTT_PASSWORD: "envpw" },
  );
  assert.equal(text, "failed: *** and *** and *** and ***");
});

Deno.test("formatConfig(): values, sources, and secrets masked", () => {
  const specs = {
    url: option({
      flag: "database-url",
      env: "DATABASE_URL",
      schema: z.string().optional(),
      defaultText: "embedded",
      doc: "",
      secret: true,
    }),
    password: option({
      flag: "mqtt-password",
      env: "MQTT_PASSWORD",
      schema: z.string().optional(),
      defaultText: "none",
      doc: "",
      secret: true,
    }),
    size: option({
      flag: "batch-size",
      env: "FEEDLINE_BATCH_SIZE",
      schema: z.string().default("5000"),
      defaultText: "5000",
      doc: "",
    }),
    user: option({
      flag: "mqtt-username",
      env: "MQTT_USERNAME",
      schema: z.string().optional(),
      defaultText: "none",
      doc: "",
    }),
    ...printConfigOptions,
  };
  const text = formatConfig(
    specs,
    ["--mqtt-password", "hunter22", "--print-config"],
    { DATABASE_URL: "postgres://u:dbpw123@h/db?sslmode=require", MQTT_USERNAME: "hunter22x" },
    { DATABASE_URL: "/run/secrets/db" },
    "serve",
  );
  const lines = text.split("\n").map((l) => l.split(/\s{2,}/));
  assert.deepEqual(lines, [
    [
      "database-url",
      "postgres://u:***@h/db?sslmode=require",
      "DATABASE_URL_FILE (/run/secrets/db)",
    ],
    ["mqtt-password", "***", "--mqtt-password"],
    ["batch-size", "5000", "default"],
    // A value that contains a secret is masked where it contains it.
    ["mqtt-username", "***x", "MQTT_USERNAME"],
  ]);
  assert.ok(!text.includes("dbpw123") && !text.includes("hunter22"));
});
