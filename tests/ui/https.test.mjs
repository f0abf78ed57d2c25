// The web UI over HTTPS: chromium (playwright-core) loads it from a real
// agent whose HTTPS address is in TRIBUNE_HTTPS_ADDR (tests/tls.rs starts
// it; its test CA is not in chromium's store, so certificate errors are
// ignored) and the services list fills from the API, over HTTPS too.
// Exits 0 when it did, 1 with the reason otherwise.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ADDR = process.env.TRIBUNE_HTTPS_ADDR;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function fail(msg) {
  console.error(`ui https test: ${msg}`);
  process.exit(1);
}
if (!ADDR || !ADDR.startsWith('https://')) fail('TRIBUNE_HTTPS_ADDR must be an https:// address');
setTimeout(() => fail('timed out after 60s'), 60_000).unref();

const profile = mkdtempSync(path.join(tmpdir(), 'tribune-ui-https-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  ignoreHTTPSErrors: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
});
try {
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  const plain = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('request', (r) => { if (!r.url().startsWith('https://')) plain.push(r.url()); });
  await page.goto(ADDR + '/ui/');
  await page.locator('[data-service="consul"]').waitFor({ timeout: 20_000 });
  const title = await page.title();
  if (!title.includes('tribune')) fail(`title ${title}`);
  if (errors.length) fail(`console errors: ${errors.join('; ')}`);
  if (plain.length) fail(`requests not over HTTPS: ${plain.join(' ')}`);
  console.log(`ok: ${title} over ${ADDR}`);
} catch (e) {
  fail(e.stack || String(e));
} finally {
  await context.close();
}
