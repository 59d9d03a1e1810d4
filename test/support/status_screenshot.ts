/**
 * Takes docs/status-page.png: the status page of a running serve, full page, in Debian's
 * chromium (playwright-core, a test-only dependency: run with test/deno.jsonc).
 *
 *   deno task serve --data-dir /tmp/shot --http 127.0.0.1:8091            # terminal 1
 *   deno task simulate --data-dir /tmp/shot --rate 100 --bad-ratio 0.004 \
 *     --threshold-mode alert --drift-ratio 0.5 --max-silence 1m --silent-ratio 0.2  # terminal 2
 *   # a few minutes later (the rate chart covers 10 minutes):
 *   deno run -A --config test/deno.jsonc test/support/status_screenshot.ts http://127.0.0.1:8091/
 */
import { chromium } from "playwright-core";

const [url = "http://127.0.0.1:8080/", out = "docs/status-page.png"] = Deno.args;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium" });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  // The page draws once its first poll answered; the charts fill on the next ones.
  await page.waitForLoadState("networkidle");
  await page.waitForTimeout(3_000);
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
