/**
 * The status page in a real headless browser: Debian's `chromium` driven by
 * playwright-core. `.ci/run` installs chromium; without it this test is skipped, with a
 * message, so `deno task test` passes on a machine without a browser.
 *
 * Set STATUS_PAGE_SCREENSHOT=path to save a screenshot of the page as the test left it.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startServeFixture } from "./support/fixture.ts";
import { publish, waitFor } from "./support/serve.ts";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A reject stored before this serve started (as after a restart), with a long detail. */
const EARLIER_DETAIL = "unparsable timestamp: " +
  "the device sent a whole sentence where its clock reading should have been, ".repeat(4).trim();

const hasChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!hasChromium) {
  console.warn(
    `status page browser test skipped: ${CHROMIUM} is not installed ` +
      "(apt-get install chromium; .ci/run does this)",
  );
}

Deno.test({
  name: "the status page shows a published value, a reject with its reason, messages and " +
    "readings apart, an open alert, a stale device, with no console errors" +
    (hasChromium ? "" : ` (skipped: no ${CHROMIUM})`),
  ignore: !hasChromium,
  async fn() {
    const fixture = await startServeFixture({
      device: "dev1",
      feeds: ["temp", "hum", "wind", "rain", "co2"],
      // co2 alerts above 400 instead of rejecting: the bulk message's 410 opens an alert.
      prepare: async (db, user) => {
        await db.sql`update feeds set threshold_max = 400, threshold_mode = 'alert'
          where key = 'co2'`;
        await db.sql`insert into ingest_rejects (topic, reason, detail, received_at)
          values (${`${user}/dev1/feeds/temp`}, 'bad_timestamp', ${EARLIER_DETAIL},
                  now() - interval '1 hour')`;
      },
      args: ["--batch-interval-ms", "50", "--http", "127.0.0.1:0"],
    });
    const { serve, pub: device, user } = fixture;
    const profile = await Deno.makeTempDir({ prefix: "feedline-chromium-" });
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 1000 },
    });
    try {
      const problems: string[] = [];
      const page = await context.newPage();
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") problems.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
      page.on("response", (r) => {
        if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
      });

      // As after a restart: a stored reject from before this start, none since.
      await page.goto(`http://127.0.0.1:${serve.httpPort}/`);
      const earlier = page.locator('#rejects tr[data-reason="bad_timestamp"][data-earlier]');
      await earlier.waitFor();
      assert.match(
        await page.locator("#reject-counts td.empty").textContent() ?? "",
        /^none since this start \(/,
      );
      // Its long detail is cut at a word, and nothing of what is shown is hidden.
      const detail = earlier.locator("td.detail");
      const shown = await detail.textContent() ?? "";
      assert.ok(shown.endsWith(" …"), shown);
      const kept = shown.slice(0, -2);
      assert.ok(EARLIER_DETAIL.startsWith(kept) && EARLIER_DETAIL[kept.length] === " ", shown);
      assert.equal(await detail.getAttribute("title"), EARLIER_DETAIL);
      assert.ok(await detail.evaluate((e) => e.scrollWidth <= e.clientWidth), "clipped text");

      await publish(device, serve.feedTopic(user, "dev1", "temp"), "23.75");
      await publish(device, serve.feedTopic(user, "dev1", "temp"), "{not json");
      await publish(device, serve.statusTopic(user, "dev1"), "online");
      // One bulk message, four readings.
      await publish(
        device,
        serve.feedsTopic(user, "dev1"),
        JSON.stringify({ hum: 40, wind: 3.5, rain: 0, co2: 410 }),
      );
      await waitFor("four messages processed", () => serve.metrics.processed.total() === 4);

      await page.goto(`http://127.0.0.1:${serve.httpPort}/`);
      const value = page.locator('#feeds tr[data-feed="temp"] td.value');
      // The database answers are reused for 2 s (src/ops/live.ts): the first load's may show.
      await value.filter({ hasText: /^23\.75$/ }).waitFor({ timeout: 15_000 });
      const reject = page.locator('#rejects tr[data-reason="bad_payload"]');
      await reject.first().waitFor();
      assert.match(
        await reject.first().textContent() ?? "",
        new RegExp(`bad_payload.*${serve.feedTopic(user, "dev1", "temp")}`),
      );
      assert.equal(await page.locator('#reject-counts tr[data-reason="bad_payload"]').count(), 1);
      // The devices' answer is reused for 2 s like the feeds' (src/ops/live.ts), fetched at
      // its own time: it may still be the one from before the `online` for a poll or two.
      await page.locator('[data-tile="online"] .v').filter({ hasText: /^1$/ })
        .waitFor({ timeout: 15_000 });
      assert.equal(await page.locator("#ready-broker").textContent(), "broker up");
      const alert = page.locator('#alerts tr[data-alert="above"][data-feed="co2"]');
      await alert.waitFor();
      assert.equal(await alert.locator("td.peak").textContent(), "410");
      assert.equal(await page.locator('[data-tile="alerts-above"] .v').textContent(), "1");
      assert.equal(await page.locator("#ready-database").textContent(), "database up");

      // Messages and readings are labelled apart: 4 messages received (plain, bad, status,
      // bulk), 3 of them stored, 1 rejected; 5 readings stored (1 plain + 4 in the bulk).
      const tile = async (id: string) => {
        const t = page.locator(`[data-tile="${id}"]`);
        return [await t.locator(".l").textContent(), await t.locator(".v").textContent()];
      };
      assert.deepEqual(await tile("total-received"), ["messages received", "4"]);
      assert.deepEqual(await tile("messages-stored"), ["messages stored", "3"]);
      assert.deepEqual(await tile("total-rejected"), ["messages rejected", "1"]);
      assert.deepEqual(await tile("readings-stored"), ["readings stored", "5"]);
      assert.deepEqual(await tile("stale"), ["stale (online, silent)", "0"]);

      // Live: a value published while the page is open appears without a reload.
      await publish(device, serve.feedTopic(user, "dev1", "temp"), "24.5");
      await value.filter({ hasText: /^24\.5$/ }).waitFor({ timeout: 15_000 });
      assert.equal(await page.locator('#feeds tr[data-feed="temp"] svg path').count(), 1);
      // Both rates are charted once two history samples exist.
      await page.locator("#rate-chart path").first().waitFor({ timeout: 15_000 });
      await page.locator("#readings-chart path").first().waitFor({ timeout: 15_000 });
      // A few batches minutes apart: each shows (a dot alone, a line for neighbours).
      await page.locator('#batch-chart path[data-dot], #batch-chart path[d*="L"]').first()
        .waitFor({ state: "attached", timeout: 15_000 });

      // A device online but silent for longer than the threshold (5 min) is shown stale.
      await fixture.db.sql`update devices set last_seen_at = now() - interval '10 minutes'`;
      await page.locator('[data-tile="stale"] .v').filter({ hasText: /^1$/ })
        .waitFor({ timeout: 15_000 });
      assert.equal(await page.locator('[data-tile="online"] .v').textContent(), "0");
      assert.equal(
        await page.locator('#devices tr[data-device="dev1"] td.stale').textContent(),
        "stale (online, silent)",
      );

      const screenshot = Deno.env.get("STATUS_PAGE_SCREENSHOT");
      if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      await Deno.remove(profile, { recursive: true });
      await fixture.close();
    }
  },
});
