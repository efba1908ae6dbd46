// The challenge service, the SDK and signed requests in a real browser
// (issue 6): a page obtains a clearance and its signed request reaches the
// origin with a low rank; the same request replayed outside the browser,
// with a tampered body, or with another device is refused; a page driven
// with navigator.webdriver gets a higher rank; a browser navigation passes
// the interstitial; time to clearance at the default difficulty.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DESKTOP_UA, launchBrowser, median, startGateway, startOrigin } from './lib.mjs';

const CONFIG = `
[challenge]
difficulty = 17
# The time-to-clearance test asks for many clearances from one device.
device_burst = 40
# A page navigated to: the interstitial's cookie clearance serves it.
[[policies]]
name = "pages"
path = "/api/home$"
clearance = "required"
# Calls of the app: signed with the clearance's key; a cookie never stands in.
[[policies]]
name = "api"
path = "/api/"
clearance = "required"
signature = true
`;

const APP = `<!doctype html>
<html><head><title>app</title></head><body>
<gateway-challenge id="gc"></gateway-challenge>
<script type="module">
  import * as pc from '/.portcullis/sdk/index.js';
  window.pc = pc;
  document.getElementById('gc').addEventListener('challengesuccess', (e) => { window.gcResult = e.detail; });
  document.getElementById('gc').addEventListener('challengefail', (e) => { window.gcResult = e.detail; });
</script></body></html>`;

let origin;
let gw;
let browser;

before(async () => {
  origin = await startOrigin({ '/app.html': APP, '/api/home': '<h1 id="home">home</h1>' });
  gw = await startGateway(CONFIG, origin.url);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  await origin?.close();
});

/** A page of the app in a fresh context; `webdriver` leaves automation visible. */
async function appPage({ webdriver = false } = {}) {
  const context = await browser.newContext({ userAgent: DESKTOP_UA });
  if (!webdriver) {
    // What a person's browser shows: Playwright's Chromium sets navigator.webdriver.
    await context.addInitScript(() => {
      Object.defineProperty(Object.getPrototypeOf(navigator), 'webdriver', { get: () => false });
    });
  }
  const page = await context.newPage();
  await page.goto(`${gw.url}/app.html`);
  await page.waitForFunction(() => window.pc !== undefined);
  return page;
}

/** The order request as the browser sent it (the origin never sees the SDK's headers). */
function orderSent(page) {
  return page
    .waitForRequest((req) => req.url().includes('/api/order'))
    .then(async (req) => {
      const url = new URL(req.url());
      return { url: url.pathname + url.search, method: req.method(), headers: await req.allHeaders(), body: req.postData() };
    });
}

async function clearAndOrder(page, body) {
  return page.evaluate(async (body) => {
    const clearance = await window.pc.getClearance();
    const res = await window.pc.fetch('/api/order?campaign=spring', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    return { clearance, status: res.status, json: await res.json().catch(() => null) };
  }, body);
}

/** Resends a request the origin saw, as curl would, with `change` applied. */
function resend(seen, change = {}) {
  const headers = { ...seen.headers };
  for (const h of Object.keys(headers)) if (h.startsWith(':')) delete headers[h];
  for (const h of ['host', 'connection', 'content-length', 'x-forwarded-for', 'x-request-id']) delete headers[h];
  for (const h of Object.keys(headers)) if (h.startsWith('x-wx-')) delete headers[h];
  Object.assign(headers, change.headers || {});
  return fetch(`${gw.url}${seen.url}`, { method: seen.method, headers, body: change.body ?? seen.body });
}

test('a page obtains a clearance and its signed request reaches the origin with rank <= 1', async () => {
  const page = await appPage();
  const body = JSON.stringify({ sku: 'A-100', qty: 1 });
  const sent = orderSent(page);
  const r = await clearAndOrder(page, body);
  assert.equal(r.clearance.success, true, JSON.stringify(r.clearance));
  assert.equal(r.clearance.err_code, 0);
  assert.match(r.clearance.cid, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(Number(r.json.rank) <= 1, `rank ${r.json.rank}`);
  assert.equal(r.json.cid, r.clearance.cid);
  assert.equal(r.json.body, body);
  const gc = await page.evaluate(() => window.gcResult);
  assert.equal(gc.success, true, 'the <gateway-challenge> element fired challengesuccess');

  const atOrigin = origin.requests.findLast((q) => q.url === '/api/order?campaign=spring');
  assert.equal(atOrigin.headers['x-pc-clearance'], undefined, 'the origin never sees the clearance');
  assert.equal(atOrigin.headers['x-pc-device'], undefined, 'nor the unverified device header');
  const seen = await sent;
  const apiHits = () => origin.requests.filter((q) => q.url.startsWith('/api/')).length;
  const hits = apiHits();

  const replay = await resend(seen);
  assert.equal(replay.status, 403);
  assert.equal(replay.headers.get('x-pc-error'), 'signature_replayed');

  const tampered = await resend(seen, { body: JSON.stringify({ sku: 'A-100', qty: 99 }) });
  assert.equal(tampered.status, 403);
  assert.equal(tampered.headers.get('x-pc-error'), 'digest_mismatch');

  const other = await appPage();
  const otherResult = await other.evaluate(() => window.pc.getClearance());
  assert.equal(otherResult.success, true);
  const otherDevice = await other.evaluate(() => window.pc.client().deviceId());
  const moved = await resend(seen, { headers: { 'x-pc-device': otherDevice } });
  assert.equal(moved.status, 401);
  assert.equal(moved.headers.get('x-pc-error'), 'clearance_wrong_device');

  assert.equal(apiHits(), hits, 'no refused request reached the origin');
  await new Promise((resolve) => setTimeout(resolve, 300));
  const mine = gw.events.filter((e) => e.cid === r.clearance.cid).map((e) => `${e.path} ${e.action}`);
  assert.ok(mine.includes('/api/order pass'), `the cid is in the events of that client: ${mine}`);
  assert.ok(mine.includes('/api/order refuse'), `${mine}`);
  await page.context().close();
  await other.context().close();
});

test('a page driven with navigator.webdriver gets a higher rank', async () => {
  const human = await appPage();
  const driven = await appPage({ webdriver: true });
  const body = JSON.stringify({ sku: 'B-7' });
  const a = await clearAndOrder(human, body);
  const b = await clearAndOrder(driven, body);
  assert.equal(a.status, 200);
  assert.equal(b.clearance.success, true, JSON.stringify(b));
  assert.equal(b.status, 200);
  assert.ok(Number(b.json.rank) > Number(a.json.rank), `webdriver rank ${b.json.rank} vs ${a.json.rank}`);
  assert.ok(Number(b.json.rank) >= 3, `webdriver rank ${b.json.rank}`);
  await human.context().close();
  await driven.context().close();
});

test('a browser navigation passes the interstitial and lands on the page', async () => {
  const context = await browser.newContext({ userAgent: DESKTOP_UA });
  await context.addInitScript(() => {
    Object.defineProperty(Object.getPrototypeOf(navigator), 'webdriver', { get: () => false });
  });
  const page = await context.newPage();
  const first = await page.goto(`${gw.url}/api/home`);
  assert.equal(first.status(), 401, 'the first navigation gets the interstitial');
  await page.waitForSelector('#home', { timeout: 15000 });
  const cookies = await context.cookies();
  assert.ok(cookies.some((c) => c.name === 'pc_clearance' && c.httpOnly));
  await context.close();
});

// bench/clearance.sh runs this with the release binary, more runs and the
// issue's bound (300 ms); under the test suite on a loaded machine the
// bound only catches a broken check.
const RUNS = Number(process.env.CLEARANCE_RUNS || 11);
const MAX_MEDIAN_MS = Number(process.env.CLEARANCE_MAX_MEDIAN_MS || 2000);

test('time to clearance at the default difficulty', async () => {
  const page = await appPage();
  const times = await page.evaluate(async (runs) => {
    const out = [];
    for (let i = 0; i < runs; i++) {
      const client = new window.pc.PortcullisClient();
      const t0 = performance.now();
      const r = await client.getClearance();
      if (!r.success) throw new Error(`check failed: ${r.err_code}`);
      out.push(performance.now() - t0);
    }
    return out;
  }, RUNS);
  const m = median(times);
  console.log(`time to clearance (difficulty 17, ${times.length} runs): median ${m.toFixed(1)} ms, ` +
    `min ${Math.min(...times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`);
  assert.ok(m <= MAX_MEDIAN_MS, `median ${m} ms`);
  await page.context().close();
});
