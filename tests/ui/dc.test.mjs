// Browser test of the UI across two federated datacenters: dc1's UI
// (DC1_ADDR) switches to dc2 in the datacenter menu and shows, live, the
// service and key that only dc2 has; a key written and deleted from there
// lands in dc2 only (checked on DC2_ADDR and DC1_ADDR); a datacenter the
// agent has no path to says so. tests/ui.rs starts both servers, puts
// only-dc2/greeting and registers dc2-web in dc2, and puts only-dc1/key
// in dc1.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const DC1 = process.env.DC1_ADDR;
const DC2 = process.env.DC2_ADDR;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.UI_ARTIFACTS || tmpdir();
// A change must show within this long (blocking queries answer at once;
// the slack is for a loaded 2-core machine).
const LIVE_MS = 2000;
setTimeout(() => { console.error('datacenter ui test: timed out'); process.exit(1); }, 90_000).unref();

let stepName = '';
const step = (n) => { stepName = n; console.log(`=== ${n}`); };
const pageErrors = [];
const apiRequests = [];

async function api(addr, method, p, body) {
  const r = await fetch(addr + p, { method, body });
  return { status: r.status, text: await r.text() };
}

/** The API requests made since `from`, and whether each carried ?dc=dc2. */
function requestsSince(from) {
  return apiRequests.slice(from).map((u) => ({ path: u.pathname, dc: u.searchParams.get('dc') }));
}

async function chooseDc(page, dc) {
  await page.locator('#dc-menu summary').click();
  await page.locator(`#dc-list a[data-dc="${dc}"]`).click();
}

const profile = mkdtempSync(path.join(tmpdir(), 'tribune-ui-dc-'));
let context;
async function main() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
  page.on('request', (r) => { if (r.url().includes('/v1/')) apiRequests.push(new URL(r.url())); });

  step("dc1's UI: its own services, no ?dc=, the menu lists both, dc1 marked");
  await page.goto(`${DC1}/ui/`);
  await page.locator('[data-service="consul"]').waitFor();
  assert.equal(await page.locator('[data-service="dc2-web"]').count(), 0);
  assert.equal(await page.locator('#dc-current').innerText(), 'dc1');
  for (const q of requestsSince(0)) assert.equal(q.dc, null, `${q.path} in dc1 carried ?dc=`);
  await page.locator('#dc-menu summary').click();
  await page.locator('#dc-list a[data-dc="dc2"]').waitFor();
  assert.deepEqual(await page.locator('#dc-list a').evaluateAll((as) => as.map((a) => a.dataset.dc)), ['dc1', 'dc2']);
  assert.equal(await page.locator('#dc-list a[aria-current="true"]').getAttribute('data-dc'), 'dc1');
  // Escape closes the menu and gives focus back to it.
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#dc-menu').getAttribute('open'), null);

  step("switch to dc2 in the menu: dc2's service, every request with ?dc=dc2");
  let from = apiRequests.length;
  await chooseDc(page, 'dc2');
  await page.waitForURL(/\/ui\/dc2\/#\/services$/);
  await page.locator('[data-service="dc2-web"]').waitFor();
  assert.equal(await page.locator('[data-service="dc2-web"]').getAttribute('data-status'), 'passing');
  assert.equal(await page.locator('#dc-current').innerText(), 'dc2');
  await page.locator('#dc-menu summary').click();
  assert.equal(await page.locator('#dc-list a[aria-current="true"]').getAttribute('data-dc'), 'dc2');
  await page.screenshot({ path: path.join(ARTIFACTS, 'dc2-menu.png') });
  await page.keyboard.press('Escape');
  assert.match(await page.title(), /dc2/);
  await page.getByRole('link', { name: 'dc2-web', exact: true }).click();
  await page.locator('[data-instance="server-dc2/dc2-web-1"]').waitFor();
  assert.match(await page.locator('[data-instance="server-dc2/dc2-web-1"]').innerText(), /:9090/);
  await page.getByRole('link', { name: 'Nodes' }).click();
  await page.locator('#node-list [data-node="server-dc2"]').waitFor();
  assert.equal(await page.locator('#node-list [data-node="server-dc1"]').count(), 0);
  assert.equal(await page.locator('#node-list [data-node="server-dc2"]').getAttribute('data-status'), 'alive');
  let seen = requestsSince(from);
  assert.ok(seen.some((q) => q.path === '/v1/internal/ui/services'), JSON.stringify(seen));
  for (const q of seen) {
    // the agent's own endpoints and the datacenter list are the same from anywhere
    const local = q.path.startsWith('/v1/agent/') || q.path === '/v1/catalog/datacenters';
    assert.equal(q.dc, local ? null : 'dc2', `${q.path} carried ?dc=${q.dc}`);
  }

  step("dc2's key, live by blocking queries through dc1");
  await page.getByRole('link', { name: 'Key/Value' }).click();
  await page.locator('#kv-list [data-key="only-dc2/"]').waitFor();
  assert.equal(await page.locator('#kv-list [data-key="only-dc1/"]').count(), 0);
  await page.locator('#kv-list [data-key="only-dc2/"] a').click();
  await page.locator('#kv-list [data-key="only-dc2/greeting"] a').click();
  await page.locator('#kv-value pre >> text=hello from dc2').waitFor();
  from = apiRequests.length;
  const t0 = Date.now();
  assert.equal((await api(DC2, 'PUT', '/v1/kv/only-dc2/greeting', 'changed in dc2')).status, 200);
  await page.locator('#kv-value pre >> text=changed in dc2').waitFor({ timeout: LIVE_MS });
  console.log(`    dc2's change shown after ${Date.now() - t0} ms`);
  assert.ok(requestsSince(from - 1).some((q) => q.dc === 'dc2'), 'the watch did not long-poll dc2');

  step('write a key from the UI in dc2: it lands in dc2 only; delete it');
  await page.goto(`${DC1}/ui/dc2/#/kv/only-dc2/`);
  await page.getByLabel('Key or folder name').fill('from-ui');
  await page.getByLabel('Value').fill('written in the UI');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\/ui\/dc2\/#\/kv\/only-dc2\/from-ui$/);
  await page.locator('#kv-value pre >> text=written in the UI').waitFor();
  let r = await api(DC2, 'GET', '/v1/kv/only-dc2/from-ui?raw');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'written in the UI');
  assert.equal((await api(DC1, 'GET', '/v1/kv/only-dc2/from-ui')).status, 404, 'the key landed in dc1');
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.getByRole('button', { name: 'Yes, delete' }).click();
  await page.waitForURL(/\/ui\/dc2\/#\/kv\/only-dc2\/$/);
  assert.equal((await api(DC2, 'GET', '/v1/kv/only-dc2/from-ui')).status, 404, 'the UI did not delete it in dc2');
  assert.equal((await api(DC2, 'GET', '/v1/kv/only-dc2/greeting')).status, 200);

  step("back to dc1 in the menu: same section, dc1's keys");
  await chooseDc(page, 'dc1');
  await page.waitForURL(/\/ui\/#\/kv\/$/);
  await page.locator('#kv-list [data-key="only-dc1/"]').waitFor();
  assert.equal(await page.locator('#kv-list [data-key="only-dc2/"]').count(), 0);
  assert.equal(await page.locator('#dc-current').innerText(), 'dc1');

  step("Consul's links: /ui/dc2/... opens dc2's page, /ui/settings is the agent's own");
  await page.goto(`${DC1}/ui/dc2/kv/only-dc2/greeting/edit`);
  await page.waitForURL(/\/ui\/dc2\/#\/kv\/only-dc2\/greeting$/);
  await page.locator('#kv-value pre >> text=changed in dc2').waitFor();
  for (const p of ['/ui/settings', '/ui/settings/']) {
    await page.goto(DC1 + p);
    await page.waitForURL(/\/ui\/#\/settings$/);
    await page.locator('#token-form').waitFor();
    assert.equal(await page.locator('#dc-current').innerText(), 'dc1', p);
  }

  step('a datacenter the agent has no path to says so');
  from = apiRequests.length;
  await page.goto(`${DC1}/ui/nope/services`);
  await page.locator('#dc-unknown').waitFor();
  assert.equal(await page.locator('main h1').innerText(), 'No path to datacenter');
  assert.match(await page.locator('#dc-unknown').innerText(), /“nope”/);
  assert.equal(await page.locator('#dc-unknown a[href="/ui/dc2/services"]').count(), 1);
  assert.deepEqual(requestsSince(from).filter((q) => q.dc), [], 'requests went to the unknown datacenter');

  step('no page errors');
  assert.deepEqual(pageErrors, []);
}

try {
  await main();
  console.log('datacenter ui test: passed');
} catch (e) {
  console.error(`datacenter ui test: FAILED at step "${stepName}":\n${e.stack || e}`);
  if (pageErrors.length) console.error(`page errors:\n${pageErrors.join('\n')}`);
  try {
    const p = context?.pages().at(-1);
    if (p) await p.screenshot({ path: path.join(ARTIFACTS, 'dc-failure.png'), fullPage: true });
  } catch { /* best effort */ }
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
