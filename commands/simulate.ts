/**
 * `feedline simulate`: publishes the traffic of a fake device fleet (readings in every
 * payload format, device status with last wills, churn, and bad messages on purpose) to
 * a broker, for demos, development and load tests. The topic and payload codecs of the
 * core run in reverse, so what it sends is exactly what `serve` parses. Options are in
 * src/cli/simulate_options.ts, the engine in src/sim/simulation.ts.
 */
import { parseSimulateArgs, simulateOptions } from "../src/cli/simulate_options.ts";
import { formatOptionsHelp } from "../src/cli/options.ts";
import { mqttTlsOf } from "../src/cli/mqtt_options.ts";
import { INSECURE_WARNING, resolveMqttTls } from "../src/mqtt/tls.ts";
import { readEndpoints } from "../src/embedded/endpoints.ts";
import { redactUrl } from "../src/log.ts";
import { type ProgressSink, startSimulation } from "../src/sim/simulation.ts";
import { formatSummary } from "../src/sim/report.ts";
import { resolveTargets } from "../src/sim/targets.ts";

/** Help text of `simulate`. */
export const help = `feedline simulate — publish the traffic of a simulated device fleet

Usage: feedline simulate [options]

With \`deno task serve\` running in another terminal (embedded broker and database), plain
\`deno task simulate\` finds it, registers the fleet and publishes 10 messages a second.
Against a real broker: MQTT_URL=mqtt://host:1883 [DATABASE_URL=... --register].

Options (flag, [environment variable], default):
${formatOptionsHelp(simulateOptions)}
`;

/** Runs `simulate` until --count, --duration or SIGINT/SIGTERM. */
export async function run(args: string[]): Promise<void> {
  const config = parseSimulateArgs(args, Deno.env.toObject());
  const targets = await resolveTargets(config, readEndpoints);
  const encoder = new TextEncoder();
  const progress: ProgressSink = {
    tty: Deno.stderr.isTerminal(),
    write: (text) => {
      Deno.stderr.writeSync(encoder.encode(text));
    },
  };
  if (!config.json) {
    progress.write(
      `simulate: publishing to ${redactUrl(targets.mqttUrl)}` +
        `${targets.foundServe ? ` (found serve in ${config.dataDir})` : ""}` +
        `${
          targets.register && config.format !== "sparkplug" ? "; registering the fleet" : ""
        }; Ctrl-C to stop\n` +
        (targets.autoRegister && config.badRatio > 0
          ? "simulate: serve auto-registers, so bad messages for unknown feeds and devices " +
            "are stored, not rejected (the summary counts them apart)\n"
          : ""),
    );
  }
  const tlsSettings = mqttTlsOf(config);
  const tls = await resolveMqttTls(targets.mqttUrl, tlsSettings);
  if (tlsSettings.insecure) progress.write(`feedline: warning: ${INSECURE_WARNING}\n`);
  const sim = await startSimulation(config, { ...targets, tls, tlsSettings }, progress);
  const onSignal = () => sim.stop();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const summary = await sim.done;
    console.log(config.json ? JSON.stringify(summary) : formatSummary(summary));
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}
