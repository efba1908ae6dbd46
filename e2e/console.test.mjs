// The console in a real browser (issue 7): traffic is driven through the
// gateway, then an operator logs in, sees the dashboard filled, finds an
// intercepted request by its cid, edits a route's policy and sees it on
// live traffic within 5 s, and rolls it back.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { BIN, DESKTOP_UA, launchBrowser, startGateway, startOrigin } from './lib.mjs';

const PASSWORD = 'e2e console password';

/** An Argon2id hash from the binary itself, as an operator would make one. */
function passwordHash() {
  const made = spawnSync(BIN, ['console', 'hash-password', '--password-env', 'PC_E2E_PASSWORD'], {
    env: { ...process.env, PC_E2E_PASSWORD: PASSWORD },
    encoding: 'utf8',
  });
  assert.equal(made.status, 0, made.stderr);
  return made.stdout.trim();
}

const config = (hash) => `
[events]
log = false
# Until the proxy asks the event sink whether passes are wanted, the store
# records clean passes when the log asks for them.
log_passed = true
[challenge]
difficulty = 8
[console]
admin_password_hash = "${hash}"
[[policies]]
name = "coupon"
path = "/api/coupon"
[[policies]]
name = "shop"
path = "/api/shop"
clearance = "optional"
intercept_at = 0
`;

const APP = `<!doctype html>
<html><head><title>app</title></head><body>
<script type="module">
  import * as pc from '/.portcullis/sdk/index.js';
  window.pc = pc;
</script></body></html>`;

let origin;
let gw;
let browser;

before(async () => {
  origin = await startOrigin({ '/app.html': APP });
  gw = await startGateway(config(passwordHash()), origin.url);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  await origin?.close();
});

async function status(path) {
  const response = await fetch(`${gw.url}${path}`, { headers: { 'user-agent': DESKTOP_UA } });
  await response.arrayBuffer();
  return response.status;
}

/** Milliseconds until `path` answers `want`, polling; throws after `limitMs`. */
async function until(path, want, limitMs) {
  const started = Date.now();
  for (;;) {
    if ((await status(path)) === want) return Date.now() - started;
    if (Date.now() - started > limitMs) throw new Error(`${path} did not answer ${want} within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An intercepted request made by a page that went through the check. */
async function interceptedWithCid() {
  const context = await browser.newContext({ userAgent: DESKTOP_UA });
  const page = await context.newPage();
  await page.goto(`${gw.url}/app.html`);
  await page.waitForFunction(() => window.pc !== undefined);
  const result = await page.evaluate(async () => {
    const clearance = await window.pc.getClearance();
    const response = await window.pc.fetch('/api/shop/order', { method: 'POST', body: '{"item":1}' });
    return { cid: clearance.cid, status: response.status, body: await response.text() };
  });
  await context.close();
  return result;
}

test('an operator watches, finds, changes and rolls back', async () => {
  // Traffic: passes, refusals of the edge and clean layers, a policy intercept.
  for (let i = 0; i < 20; i += 1) assert.equal(await status(`/hello/${i}`), 200);
  assert.equal(await status('/a?x=%bf'), 403);
  assert.equal(await status("/search?q=1'%20union%20select%20password%20from%20users--"), 403);
  const shop = await interceptedWithCid();
  assert.equal(shop.status, 403, shop.body);
  assert.ok(shop.cid, 'the clearance has a cid');
  const requestId = JSON.parse(shop.body).request_id;
  assert.ok(requestId, shop.body);

  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${gw.admin}/`);

  // Log in.
  await page.getByLabel('User').fill('admin');
  await page.getByLabel('Password').fill('not it');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('wrong user name or password').waitFor();
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();

  // The dashboard fills as the events are written (batches within 100 ms).
  const requests = () => page.locator('#total-requests').textContent().then((t) => Number(t.replace(/,/g, '')));
  const deadline = Date.now() + 10000;
  while ((await requests()) < 23 && Date.now() < deadline) {
    await page.waitForTimeout(300);
    await page.getByRole('button', { name: 'Last hour' }).click();
    await page.locator('#total-requests').waitFor();
  }
  assert.ok((await requests()) >= 23, `requests on the dashboard: ${await requests()}`);
  assert.ok(Number((await page.locator('#total-intercepts').textContent()).replace(/,/g, '')) >= 3);
  assert.ok((await page.locator('svg.chart polyline').count()) >= 3, 'charts are drawn');
  await page.getByRole('img', { name: /Intercepts by layer: .*policy/ }).waitFor();
  await page.getByRole('img', { name: /Intercepts by reason: / }).waitFor();
  // The page's check (a challenge issued and solved) is in the solve rate.
  await page.getByRole('img', { name: /Challenge solve rate by route: \(the check\) 100%/ }).waitFor();
  assert.equal(await page.locator('#challenges td[data-route=""]').textContent(), '100%');
  await page.getByRole('button', { name: 'Last day' }).click();
  await page.getByRole('img', { name: /Requests by action: .*pass/ }).waitFor();
  await page.getByRole('cell', { name: 'shop' }).first().waitFor();

  // Find the intercepted request by its cid, and open it.
  await page.getByRole('link', { name: 'Interception log' }).click();
  await page.getByLabel('Challenge id (cid)').fill(shop.cid);
  await page.getByRole('button', { name: 'Search' }).click();
  const row = page.locator(`table.events tr[data-request-id="${requestId}"]`);
  await row.locator('a').waitFor();
  for (const cid of await page.locator('table.events tbody td.mono').allTextContents()) {
    assert.equal(cid, shop.cid, 'only requests of this cid are listed');
  }
  await row.locator('a').click();
  await page.getByRole('heading', { name: `Event ${requestId}` }).waitFor();
  await page.getByRole('cell', { name: 'risk_intercept' }).waitFor();
  const facts = await page.locator('dl.facts').textContent();
  assert.match(facts, new RegExp(shop.cid));
  assert.match(facts, /shop/);

  // Edit the coupon route's policy: intercept every request with a 451.
  assert.equal(await status('/api/coupon'), 200);
  await page.getByRole('link', { name: 'Policies' }).click();
  const coupon = page.locator('fieldset[data-policy="coupon"]');
  await coupon.getByLabel('Intercept from rank').selectOption('0');
  await coupon.getByLabel('Custom intercept response').check();
  await coupon.getByLabel('Status').fill('451');
  await page.getByLabel('Comment').fill('close the coupon route');
  await page.getByRole('button', { name: 'Validate' }).click();
  await page.getByText('Valid: ready to apply.').waitFor();
  const clicked = Date.now();
  await page.getByRole('button', { name: 'Apply', exact: true }).click();
  await page.getByText(/Applied as version 1/).waitFor();
  await until('/api/coupon', 451, 5000);
  const applyMs = Date.now() - clicked;
  assert.ok(applyMs < 5000, `applied in ${applyMs} ms`);
  assert.equal(await status('/hello/again'), 200, 'other routes untouched');

  // Roll back to the file's configuration.
  await page.getByRole('button', { name: 'Roll back to 0' }).click();
  await page.getByText(/Rolled back: now version 2/).waitFor();
  await until('/api/coupon', 200, 5000);

  // Both changes are in the audit log.
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByRole('cell', { name: 'policy.rollback' }).waitFor();
  await page.getByRole('cell', { name: 'policy.apply' }).waitFor();
  console.log(`policy applied to live traffic ${applyMs} ms after the click`);
  await context.close();
});
