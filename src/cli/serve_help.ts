/** The help text of `feedline serve` (commands/serve.ts re-exports it as `help`). */
import { formatOptionsHelp } from "./options.ts";
import { serveOptions } from "./serve_options.ts";

/** Help text of `serve`. */
export const serveHelp = `feedline serve — ingest MQTT messages into PostgreSQL

Usage: feedline serve [options]

With no MQTT_URL and no DATABASE_URL it runs an embedded broker and database:
try it with \`deno task serve\`, then publish to <user uuid>/<device>/feeds/<feed>;
serve's last start-up line, "ready", has a mosquitto_pub command to copy.

Options (flag, [environment variable], default):
${formatOptionsHelp(serveOptions)}
`;
