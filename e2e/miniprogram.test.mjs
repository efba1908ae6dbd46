// The mini-program client the way WeChat runs it (issue 14): the SDK and
// its <gateway-challenge> component compiled as the developer tools do,
// rendered by miniprogram-simulate (the official custom-component test
// tool, on jsdom) against the gateway binary, with the `wx` API over real
// HTTP and without WebCrypto, as in the mini-program runtime. The wx calls
// of the SDK are type-checked against miniprogram-api-typings first.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { JSDOM } from 'jsdom';
import { startGateway, startOrigin } from './lib.mjs';
import { buildProject } from './miniprogram/devtools.mjs';
import { makeWx } from './miniprogram/wx.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

const config = (extra = '') => `
[events]
log = true
[challenge]
difficulty = 10
${extra}
[[policies]]
name = "coupon"
path = "/api/"
clearance = "required"
signature = true
`;

let origin;
let gw;
let refusing;
let project;
let simulate;
let phone;

before(async () => {
  origin = await startOrigin();
  gw = await startGateway(config(), origin.url);
  // Every client is at or above refuse_at: the check refuses them all.
  refusing = await startGateway(config('refuse_at = 0'), origin.url);
  project = buildProject();
  // The simulator renders into a DOM (its documented jest set-up is jsdom).
  const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'https://servicewechat.com/' });
  globalThis.window = dom.window;
  globalThis.document = dom.window.document;
  // The mini-program runtime has no WebCrypto: the SDK signs in pure JS.
  Object.defineProperty(globalThis, 'crypto', { value: undefined, configurable: true, writable: true });
  phone = makeWx();
  globalThis.wx = phone.wx;
  simulate = require('miniprogram-simulate');
});

after(async () => {
  await gw?.stop();
  await refusing?.stop();
  await origin?.close();
  project?.remove();
});

/** Waits until `probe()` is truthy (at most 10 s). */
async function until(probe, what) {
  const deadline = Date.now() + 10000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Renders a page holding <gateway-challenge>; returns the events it fired. */
function renderPage() {
  const fired = [];
  const component = simulate.load(project.component, 'gateway-challenge');
  const page = simulate.load({
    usingComponents: { 'gateway-challenge': component },
    template: '<gateway-challenge bindchallengesuccess="onSuccess" bindchallengefail="onFail"></gateway-challenge>',
    methods: {
      onSuccess(e) { fired.push({ type: 'challengesuccess', detail: e.detail }); },
      onFail(e) { fired.push({ type: 'challengefail', detail: e.detail }); },
    },
  });
  const rendered = simulate.render(page);
  rendered.attach(document.createElement('parent-wrapper'));
  return { rendered, fired };
}

test("the SDK's wx calls match miniprogram-api-typings (tsc --noEmit)", () => {
  const tsc = spawnSync(process.execPath, [
    path.join(here, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', path.join(here, 'miniprogram'),
  ], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
});

test('<gateway-challenge> obtains a clearance and wx.request calls reach the origin signed', async () => {
  const sdk = require(project.sdk);
  sdk.configure({ base: gw.url });
  const { rendered, fired } = renderPage();
  assert.match(rendered.dom.innerHTML, /<gateway-challenge><wx-view class="gateway-challenge--pc-hidden"><\/wx-view><\/gateway-challenge>/);
  await until(() => fired.length > 0, 'the component event');
  assert.equal(fired[0].type, 'challengesuccess', JSON.stringify(fired));
  const { cid } = fired[0].detail;
  assert.match(cid, /^[A-Za-z0-9_-]{22}$/);
  assert.deepEqual(fired[0].detail, { err_code: 0, success: true, cid });
  const checks = phone.calls.filter((c) => c.url.includes('/.portcullis/'));
  assert.deepEqual(checks.map((c) => c.method), ['GET', 'POST'], 'one challenge, one verify, through wx.request');

  // Signed calls through the wrapper: a POST with a JSON body, a GET with data.
  const claim = await sdk.wxRequest({ url: '/api/coupon/claim?campaign=spring', method: 'POST', data: { sku: 'A-100', qty: 1, note: '春季' } });
  assert.equal(claim.statusCode, 200, JSON.stringify(claim.data));
  assert.equal(claim.data.cid, cid, 'the origin received the clearance id');
  assert.equal(claim.data.body, '{"sku":"A-100","qty":1,"note":"春季"}');
  let completed = null;
  const list = await sdk.wxRequest({ url: `${gw.url}/api/list`, data: { page: 2, q: 'a b' }, complete: (r) => { completed = r; } });
  assert.equal(list.statusCode, 200, JSON.stringify(list.data));
  assert.equal(list.data.path, '/api/list?page=2&q=a%20b');
  assert.equal(list.data.cid, cid);
  assert.equal(completed, list);
  const seen = origin.requests.filter((r) => r.url.startsWith('/api/'));
  assert.equal(seen.length, 2);
  for (const r of seen) {
    assert.equal(r.headers['x-wx-sub-session'], cid);
    assert.ok(r.headers['x-wx-risk-rank'] !== undefined, 'the origin gets the rank');
  }

  // The same call without the SDK is refused: the signature was what passed it.
  const bare = await new Promise((resolve) => phone.wx.request({ url: `${gw.url}/api/list`, success: resolve, fail: resolve }));
  assert.equal(bare.statusCode, 401);
  assert.equal(bare.header['x-pc-error'], 'clearance_required');

  // The check's answers are decision events in the gateway's JSON log.
  const device = phone.storage.get('portcullis.device');
  await until(() => gw.events.some((e) => e.signals?.some((s) => s.name === 'portal_solved')), 'the portal_solved event');
  const names = gw.events.filter((e) => e.device_id === device).flatMap((e) => e.signals.map((s) => s.name));
  assert.ok(names.includes('portal_issued') && names.includes('portal_solved'), names.join(','));
});

test('<gateway-challenge> fires challengefail when the gateway refuses the check', async () => {
  const sdk = require(project.sdk);
  const failures = [];
  sdk.configure({ base: refusing.url }).onChallengeFail((r) => failures.push(r));
  const before = origin.requests.length;
  const { fired } = renderPage();
  await until(() => fired.length > 0, 'the component event');
  assert.equal(fired[0].type, 'challengefail', JSON.stringify(fired));
  assert.deepEqual(fired[0].detail, { err_code: sdk.ErrorCode.REJECTED, success: false, cid: '' });
  assert.deepEqual(failures, [fired[0].detail], 'onChallengeFail saw the same result');
  const call = await sdk.wxRequest({ url: '/api/list' }).catch((e) => e);
  assert.equal(call.statusCode, 401, 'without a clearance the call is challenged');
  assert.equal(origin.requests.length, before, 'nothing reached the origin');
});
