// Browser test of the UI with ACLs on (default deny): the anonymous token
// gets the "permission denied" state; logging in (Settings) with a token
// limited to app/ shows only its keys; a management token manages
// policies and tokens on the ACL pages. tests/ui.rs starts the agent and
// passes TRIBUNE_HTTP_ADDR, ROOT_TOKEN and APP_TOKEN.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ADDR = process.env.TRIBUNE_HTTP_ADDR;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ROOT = process.env.ROOT_TOKEN;
const APP = process.env.APP_TOKEN;
setTimeout(() => { console.error('acl ui test: timed out'); process.exit(1); }, 120_000).unref();

let stepName = '';
const step = (n) => { stepName = n; console.log(`=== ${n}`); };
const pageErrors = [];

async function login(page, token) {
  await page.goto(`${ADDR}/ui/#/settings`);
  await page.getByLabel('Token', { exact: true }).fill(token);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#token-message .msg-ok').waitFor();
}

const profile = mkdtempSync(path.join(tmpdir(), 'tribune-ui-acl-'));
let context;
async function main() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));

  step('anonymous: the ACL pages say permission denied, not an empty list');
  await page.goto(`${ADDR}/ui/#/acls/tokens`);
  await page.locator('#acl-denied').waitFor();
  assert.match(await page.locator('#acl-denied').innerText(), /Permission denied/);

  step('log in with the app/ token: only its keys');
  await login(page, APP);
  await page.goto(`${ADDR}/ui/#/kv/`);
  await page.locator('#kv-list [data-key="app/"]').waitFor();
  assert.equal(await page.locator('#kv-list [data-key="other/"]').count(), 0);
  await page.goto(`${ADDR}/ui/#/kv/app/`);
  await page.locator('#kv-list [data-key="app/a"]').waitFor();

  step('log in with the management token: create a policy and a token');
  await login(page, ROOT);
  await page.goto(`${ADDR}/ui/#/acls/policies`);
  await page.locator('#acl-create').waitFor();
  await page.locator('#acl-name').fill('from-ui');
  await page.locator('#acl-rules').fill('key_prefix "ui/" { policy = "write" }');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.locator('#acl-list [data-acl="from-ui"]').waitFor();
  await page.goto(`${ADDR}/ui/#/acls/tokens`);
  await page.locator('#acl-create').waitFor();
  await page.locator('#acl-name').fill('ui token');
  await page.locator('#acl-policies').fill('from-ui');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.locator('#acl-secret').waitFor();
  const secret = await page.locator('#acl-secret').innerText();
  await page.locator('#acl-list [data-acl="ui token"]').waitFor();
  const r = await fetch(`${ADDR}/v1/kv/ui/x`, { method: 'PUT', body: '1', headers: { 'X-Consul-Token': secret } });
  assert.equal(r.status, 200, 'the token made in the UI writes ui/');
  const denied = await fetch(`${ADDR}/v1/kv/app/x`, { method: 'PUT', body: '1', headers: { 'X-Consul-Token': secret } });
  assert.equal(denied.status, 403);
  await page.screenshot({ path: path.join(process.env.UI_ARTIFACTS || tmpdir(), 'acl-tokens.png'), fullPage: true });

  step('no page errors');
  assert.deepEqual(pageErrors, []);
}

try {
  await main();
  console.log('acl ui test: passed');
} catch (e) {
  console.error(`acl ui test: FAILED at step "${stepName}":\n${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
