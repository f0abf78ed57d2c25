// Browser test of tribune's web UI: Debian's chromium driven by
// playwright-core against a real `tribune agent -dev` whose address is in
// TRIBUNE_HTTP_ADDR (tests/ui.rs starts it). Screenshots go to UI_ARTIFACTS.
// Exits 0 when every step passed, 1 with the failing step otherwise.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ADDR = process.env.TRIBUNE_HTTP_ADDR;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.UI_ARTIFACTS || path.resolve('ui-artifacts');
// A health flip or KV change must show within this long (blocking queries
// answer at once; the slack is for a loaded 2-core CI machine).
const LIVE_MS = 2000;

if (!ADDR) fail('TRIBUNE_HTTP_ADDR is not set (tests/ui.rs starts an agent and sets it)');
if (!existsSync(CHROMIUM)) fail(`chromium not found at ${CHROMIUM}: install Debian's chromium (./test.sh does)`);
mkdirSync(ARTIFACTS, { recursive: true });
rmSync(path.join(ARTIFACTS, 'failure.png'), { force: true }); // from an earlier run

function fail(msg) {
  console.error(`ui test: ${msg}`);
  process.exit(1);
}

// Never hang CI: the whole run has a deadline.
setTimeout(() => fail('timed out after 180s'), 180_000).unref();

let stepName = '';
function step(name) {
  stepName = name;
  console.log(`=== ${name}`);
}

async function api(method, p, body) {
  const r = await fetch(ADDR + p, { method, body });
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text), index: Number(r.headers.get('x-consul-index')) };
}

async function until(what, fn, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const profile = mkdtempSync(path.join(tmpdir(), 'tribune-ui-chromium-'));
let context;
const consoleErrors = [];
const apiRequests = [];

function watchPage(page, label) {
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`[${label}] console: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`[${label}] page error: ${e.message}`));
  page.on('request', (r) => {
    if (r.url().includes('/v1/')) apiRequests.push({ url: r.url(), headers: r.headers(), method: r.method() });
  });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Time from `act` until `selector` is in the page, failing past LIVE_MS. */
async function liveWithin(page, act, selector) {
  const t0 = Date.now();
  await act();
  await page.waitForSelector(selector, { timeout: LIVE_MS });
  return Date.now() - t0;
}

async function main() {
  step('register two services: web passing, db with a failing TTL check');
  let r = await api('PUT', '/v1/agent/service/register', JSON.stringify({
    Name: 'web', ID: 'web-1', Port: 8080, Tags: ['v1', 'http'], Meta: { version: '1.2.3' },
    Check: { CheckID: 'web-ttl', Name: 'web alive', TTL: '10m', Status: 'passing' },
  }));
  assert.equal(r.status, 200, r.text);
  r = await api('PUT', '/v1/agent/service/register', JSON.stringify({
    Name: 'db', ID: 'db-1', Port: 5432, Tags: ['primary'],
    Check: { CheckID: 'db-ttl', Name: 'db heartbeat', TTL: '10m', Notes: 'updated by the db itself' },
  }));
  assert.equal(r.status, 200, r.text);
  await until('both services in the catalog', async () => {
    const c = await api('GET', '/v1/health/state/any');
    return c.status === 200 && ['web-ttl', 'db-ttl'].every((id) => c.json().some((x) => x.CheckID === id));
  });

  step('launch chromium');
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 800 },
  });
  const page = context.pages()[0] || await context.newPage();
  watchPage(page, 'laptop');

  step('/ redirects to the UI; services list shows the health summary');
  await page.goto(ADDR + '/');
  assert.match(page.url(), /\/ui\/#\/services$/, `landed on ${page.url()}`);
  const db = page.locator('[data-service="db"]');
  const web = page.locator('[data-service="web"]');
  await db.waitFor();
  assert.equal(await db.getAttribute('data-status'), 'critical');
  assert.match(await db.innerText(), /1 instance\b/);
  assert.match(await db.innerText(), /1 critical/);
  assert.equal(await web.getAttribute('data-status'), 'passing');
  assert.match(await web.innerText(), /2 passing/);
  assert.match(await web.innerText(), /v1/);
  assert.match(await page.locator('#service-summary').innerText(), /1 critical/);
  await page.evaluate(() => { window.__noReload = true; });
  await shot(page, 'services');

  step('a check turning passing shows on the list without reload');
  let ms = await liveWithin(page, () => api('PUT', '/v1/agent/check/pass/db-ttl?note=back'),
    '[data-service="db"][data-status="passing"]');
  console.log(`    db passing after ${ms} ms`);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');
  assert.ok(apiRequests.some((q) => q.url.includes('/v1/internal/ui/services?index=')),
    'the list did not long-poll with ?index=');

  step('service page: instance, address, tags, meta, checks; live');
  await page.getByRole('link', { name: 'db', exact: true }).click();
  await page.waitForURL(/#\/services\/db$/);
  const inst = page.locator('[data-instance$="/db-1"]');
  await inst.waitFor();
  assert.match(await inst.innerText(), /:5432/);
  assert.match(await inst.innerText(), /primary/);
  assert.equal(await inst.locator('[data-check="db-ttl"]').getAttribute('data-status'), 'passing');
  ms = await liveWithin(page, () => api('PUT', '/v1/agent/check/fail/db-ttl?note=' + encodeURIComponent('disk full')),
    '[data-check="db-ttl"][data-status="critical"]');
  console.log(`    db critical after ${ms} ms`);
  assert.match(await inst.locator('[data-check="db-ttl"]').innerText(), /disk full/);
  await shot(page, 'service-db');
  await page.goto(ADDR + '/ui/#/services/web');
  await page.locator('[data-instance$="/web-1"]').waitFor();
  assert.match(await page.locator('[data-instance$="/web-1"]').innerText(), /version\s*1\.2\.3/);

  step('nodes list and node page');
  await page.getByRole('link', { name: 'Nodes' }).click();
  const nodeRow = page.locator('#node-list [data-node]').first();
  await nodeRow.waitFor();
  assert.equal(await nodeRow.getAttribute('data-status'), 'alive');
  assert.match(await nodeRow.innerText(), /3 services/); // consul, web, db
  await shot(page, 'nodes');
  await nodeRow.locator('a').click();
  await page.locator('#node-services [data-service="db-1"]').waitFor();
  assert.match(await page.locator('#node-status').innerText(), /alive/);
  assert.match(await page.locator('#node-detail').innerText(), /Serf Health Status/);
  await shot(page, 'node');

  step('KV: create a folder and a JSON key through the UI, read it over the API');
  await page.getByRole('link', { name: 'Key/Value' }).click();
  await page.getByLabel('Key or folder name').fill('app/');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/#\/kv\/app\/$/);
  const value = '{"port":8080,"debug":false}';
  await page.getByLabel('Key or folder name').fill('config.json');
  await page.getByLabel('Value').fill(value);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/#\/kv\/app\/config\.json$/);
  await page.locator('#kv-value pre.json').waitFor();
  assert.match(await page.locator('#kv-value').innerText(), /"port": 8080,\n\s+"debug": false/);
  r = await api('GET', '/v1/kv/app/config.json?raw');
  assert.equal(r.status, 200);
  assert.equal(r.text, value);
  assert.equal((await api('GET', '/v1/kv/app/')).status, 200, 'the folder key app/ exists');
  await shot(page, 'kv-key');

  step('KV: creating an existing key is refused, not overwritten');
  await page.goto(ADDR + '/ui/#/kv/app/');
  await page.getByLabel('Key or folder name').fill('config.json');
  await page.getByLabel('Value').fill('clobber');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#kv-create-message .msg-error').waitFor();
  assert.match(await page.locator('#kv-create-message').innerText(), /already exists/);
  assert.equal((await api('GET', '/v1/kv/app/config.json?raw')).text, value);

  step('KV: a change by someone else shows live');
  await page.getByRole('link', { name: 'config.json', exact: true }).click();
  await page.locator('#kv-value pre').waitFor();
  ms = await liveWithin(page, () => api('PUT', '/v1/kv/app/config.json', '{"port":8081}'),
    '#kv-value pre.json >> text=8081');
  console.log(`    new value shown after ${ms} ms`);

  step('KV: edit with a concurrent change in between shows a conflict');
  await page.getByRole('button', { name: 'Edit' }).click();
  const editor = page.getByLabel('Value of app/config.json');
  await editor.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'kv-edit-value', 'focus moves to the editor');
  r = await api('PUT', '/v1/kv/app/config.json', '{"port":9090}');
  assert.equal(r.text.trim(), 'true');
  await editor.fill('{"port":8082}');
  await page.getByRole('button', { name: 'Save' }).click();
  const alert = page.locator('#kv-message .msg-error');
  await alert.waitFor();
  assert.match(await alert.innerText(), /Conflict: someone else changed app\/config\.json/);
  assert.equal((await api('GET', '/v1/kv/app/config.json?raw')).text, '{"port":9090}', 'the concurrent write was overwritten');
  assert.equal(await editor.inputValue(), '{"port":8082}', 'the edit was lost');
  await shot(page, 'kv-conflict');
  await page.getByRole('button', { name: 'Keep my edits' }).click();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#kv-message .msg-ok').waitFor();
  assert.equal((await api('GET', '/v1/kv/app/config.json?raw')).text, '{"port":8082}');
  await page.locator('#kv-value pre >> text=8082').waitFor();

  step('KV: delete the key, then the folder');
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.getByRole('button', { name: 'Yes, delete' }).click();
  await page.waitForURL(/#\/kv\/app\/$/);
  assert.equal((await api('GET', '/v1/kv/app/config.json')).status, 404);
  await api('PUT', '/v1/kv/app/sub/deep', 'x');
  await page.locator('#kv-list [data-key="app/sub/"]').waitFor({ timeout: LIVE_MS });
  await page.getByRole('button', { name: 'Delete folder' }).click();
  await page.getByRole('button', { name: 'Yes, delete folder' }).click();
  await page.waitForURL(/#\/kv\/$/);
  assert.equal((await api('GET', '/v1/kv/app/?recurse')).status, 404);

  step('keyboard: skip link, real links and buttons, labelled fields, visible focus');
  await page.goto(ADDR + '/ui/#/kv/');
  await page.reload(); // focus starts at the top of a freshly loaded page
  await page.locator('#kv-create').waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');
  assert.match(page.url(), /#\/kv\/$/, 'the skip link must not change the route');
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, textarea, select')]
    .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label')).map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, []);
  await page.getByRole('link', { name: 'Services' }).focus();
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'focused link has no visible outline');
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/services$/);
  await page.locator('[data-service="db"]').waitFor();

  step('settings: the token is stored and sent as X-Consul-Token');
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByLabel('Token', { exact: true }).fill('s3cret-token');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#token-message .msg-ok').waitFor();
  await shot(page, 'settings');
  apiRequests.length = 0;
  await page.reload();
  assert.equal(await page.getByLabel('Token', { exact: true }).inputValue(), 's3cret-token');
  await page.getByRole('link', { name: 'Services' }).click();
  await page.locator('[data-service="db"]').waitFor();
  assert.ok(apiRequests.length > 0);
  for (const q of apiRequests) assert.equal(q.headers['x-consul-token'], 's3cret-token', q.url);
  await page.goto(ADDR + '/ui/#/settings');
  await page.getByRole('button', { name: 'Clear' }).click();

  step("Consul's deep links (/ui/<dc>/...) open the matching view");
  const self = (await api('GET', '/v1/agent/self')).json();
  const dc = self.Config.Datacenter;
  const nodeName = self.Config.NodeName;
  await api('PUT', '/v1/kv/deep/link.json', '{"from":"a Consul bookmark"}');
  r = await api('PUT', '/v1/agent/service/register', JSON.stringify({ Name: 'redis.db', ID: 'redis-1', Port: 6379 }));
  assert.equal(r.status, 200, r.text);
  for (const [p, want, ready] of [
    [`/ui/${dc}/services`, '#/services', '[data-service="db"]'],
    [`/ui/${dc}/services/web/instances`, '#/services/web', '[data-instance$="/web-1"]'],
    [`/ui/${dc}/services/redis.db`, '#/services/redis.db', '[data-instance$="/redis-1"]'],
    [`/ui/${dc}/nodes`, '#/nodes', '#node-list [data-node]'],
    [`/ui/${dc}/nodes/${nodeName}/health-checks`, `#/nodes/${nodeName}`, '#node-services [data-service="db-1"]'],
    [`/ui/${dc}/kv/deep/`, '#/kv/deep/', '#kv-list [data-key="deep/link.json"]'],
    [`/ui/${dc}/kv/deep/link.json/edit`, '#/kv/deep/link.json', '#kv-value pre'],
  ]) {
    const resp = await page.goto(ADDR + p);
    assert.equal(resp.status(), 200, `${p} answered ${resp.status()}`);
    await page.locator(ready).first().waitFor();
    const u = new URL(page.url());
    assert.equal(u.pathname + u.hash, `/ui/${want}`, `${p} landed on ${page.url()}`);
  }
  assert.match(await page.locator('#kv-value').innerText(), /a Consul bookmark/);
  // A section this UI lacks says so (and links back), not a blank page.
  await page.goto(ADDR + `/ui/${dc}/intentions`);
  await page.waitForURL(/\/ui\/#\/intentions$/);
  assert.equal(await page.locator('main h1').innerText(), 'Page not found');
  await api('PUT', '/v1/agent/service/deregister/redis-1');

  step('phone width: no sideways scrolling; screenshots');
  const phone = await context.newPage();
  watchPage(phone, 'phone');
  await phone.setViewportSize({ width: 390, height: 844 });
  await api('PUT', '/v1/kv/site/banner.json', '{"text":"hello from a phone","colors":["red","green"]}');
  for (const [hash, name, ready] of [
    ['#/services', 'phone-services', '[data-service="db"]'],
    ['#/services/db', 'phone-service-db', '[data-instance$="/db-1"]'],
    ['#/nodes', 'phone-nodes', '#node-list [data-node]'],
    ['#/kv/site/banner.json', 'phone-kv', '#kv-value pre'],
  ]) {
    await phone.goto(`${ADDR}/ui/${hash}`);
    await phone.locator(ready).first().waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${hash} scrolls sideways by ${overflow}px at 390px`);
    await shot(phone, name);
  }
  await phone.close();

  step('no console errors');
  assert.deepEqual(consoleErrors, []);
}

try {
  await main();
  console.log(`ui test: passed; screenshots in ${ARTIFACTS}`);
} catch (e) {
  console.error(`ui test: FAILED at step "${stepName}":\n${e.stack || e}`);
  if (consoleErrors.length) console.error(`console errors:\n${consoleErrors.join('\n')}`);
  try {
    const p = context?.pages().at(-1);
    if (p) await p.screenshot({ path: path.join(ARTIFACTS, 'failure.png'), fullPage: true });
  } catch { /* best effort */ }
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
