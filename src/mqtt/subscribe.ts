/**
 * Subscribing serve's filters (as `$share/<group>/<filter>` with a shared group, MQTT 5
 * §4.8.2), and one clear line when the broker refuses them at SUBACK.
 */
import type { MqttClient } from "mqtt";
import type { Logger } from "../log.ts";
import type { Qos } from "../core/message.ts";

/** What to subscribe, and for the refusal's line. */
export interface SubscribeOptions {
  filters: string[];
  sharedGroup?: string;
  qos: Qos;
  clientId: string;
  log: Logger;
}

/** Subscribes; calls `onSubscribed` once the broker granted every filter. */
export function subscribeFilters(
  client: MqttClient,
  opts: SubscribeOptions,
  onSubscribed: () => void,
): void {
  const { log } = opts;
  const filters = opts.filters.map((f) => opts.sharedGroup ? `$share/${opts.sharedGroup}/${f}` : f);
  client.subscribe(filters, { qos: opts.qos }, (error, granted) => {
    // MQTT 5: MQTT.js reports a SUBACK reason code >= 0x80 as an error ("Subscribe
    // error: Not authorized"); MQTT 3.1.1: as granted QoS 128.
    const refused = (granted ?? []).filter((g) => g.qos === 128 || g.qos > 2);
    if (error && !/^Subscribe error/.test(error.message)) {
      log.error("subscribe failed", { error: error.message });
      return;
    }
    if (error || refused.length > 0) {
      if (refused.length > 0) {
        subscriptionRefused(opts, refused.map((g) => g.topic), refused.map((g) => g.qos));
      } else subscriptionRefused(opts, filters, undefined, error!.message);
      return;
    }
    log.info("subscribed", { filters, qos: opts.qos });
    onSubscribed();
  });
}

/** One clear line when the broker refuses our subscriptions at SUBACK. */
function subscriptionRefused(
  opts: SubscribeOptions,
  topics: string[],
  reasonCodes?: number[],
  reason?: string,
): void {
  const { log, sharedGroup, clientId } = opts;
  if (sharedGroup) {
    log.error(
      `broker refused the shared subscription of group "${sharedGroup}": it does not ` +
        "support shared subscriptions ($share/..., MQTT 5) or does not allow them to this " +
        "client; use a broker that does (Mosquitto 2, EMQX, HiveMQ, VerneMQ) and check its " +
        "ACLs, or run one instance without --shared-group",
      { sharedGroup, topics, reasonCodes, reason, clientId },
    );
  } else {
    log.error("broker refused subscriptions; check the broker's ACLs for this client", {
      topics,
      reasonCodes,
      reason,
      clientId,
    });
  }
}
