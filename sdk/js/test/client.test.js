import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortcullisClient, ErrorCode, solve } from '../src/index.js';
import { MockGateway, memoryStorage } from './mockgw.js';

function setup(opts = {}) {
  const gw = new MockGateway();
  const storage = memoryStorage();
  const pc = new PortcullisClient({ base: 'https://gw.example', transport: gw.transport, storage, ...opts });
  return { gw, pc, storage };
}

test('getClearance solves, caches for the session, fires callbacks', async () => {
  const { gw, pc, storage } = setup();
  const ok = [], bad = [];
  pc.onChallengeSuccess((r) => ok.push(r));
  pc.onChallengeFail((r) => bad.push(r));
  await pc.start();
  const r1 = await pc.getClearance();
  assert.equal(r1.success, true);
  assert.equal(r1.err_code, ErrorCode.OK);
  assert.match(r1.cid, /^[A-Za-z0-9_-]{22}$/);
  const r2 = await pc.getClearance();
  assert.deepEqual(r2, r1);
  assert.equal(gw.calls.length, 2, 'one challenge + one verify');
  assert.equal(ok.length, 1);
  assert.equal(bad.length, 0);
  const dev = storage.map.get('portcullis.device');
  assert.match(dev, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(gw.calls[0].headers['x-pc-device'], dev);
  // the report went along with the solution
  assert.equal(gw.lastReport.sdk, 'js/0.1.0');
  assert.equal(typeof gw.lastReport.solve_ms, 'number');
  assert.ok(Array.isArray(gw.lastReport.headless_markers));
});

test('concurrent getClearance calls share one check', async () => {
  const { gw, pc } = setup();
  const [a, b] = await Promise.all([pc.getClearance(), pc.getClearance()]);
  assert.equal(a.cid, b.cid);
  assert.equal(gw.calls.length, 2);
});

test('a failed check reports its code, and the next call runs again', async () => {
  const { gw, pc } = setup();
  const fails = [];
  pc.onChallengeFail((r) => fails.push(r));
  gw.failVerify.push({ status: 403, error: 'rejected' });
  const r1 = await pc.getClearance();
  assert.deepEqual(r1, { err_code: ErrorCode.REJECTED, success: false, cid: '' });
  assert.equal(fails.length, 1);
  const r2 = await pc.getClearance();
  assert.equal(r2.success, true);
});

test('an expired challenge is retried once inside the same check', async () => {
  const { gw, pc } = setup();
  gw.failVerify.push({ status: 400, error: 'expired' });
  const r = await pc.getClearance();
  assert.equal(r.success, true);
  assert.equal(gw.calls.length, 4);
  gw.failVerify.push({ status: 400, error: 'expired' }, { status: 400, error: 'expired' });
  pc.reset();
  assert.equal((await pc.getClearance()).err_code, ErrorCode.CHALLENGE_EXPIRED);
});

test('network, rate-limit and bad-response errors map to codes', async () => {
  const pc = new PortcullisClient({ base: 'https://gw', storage: memoryStorage(), transport: async () => { throw new Error('offline'); } });
  assert.equal((await pc.getClearance()).err_code, ErrorCode.NETWORK);
  const pc2 = new PortcullisClient({ base: 'https://gw', storage: memoryStorage(), transport: async () => ({ status: 429, header: () => null, text: '' }) });
  assert.equal((await pc2.getClearance()).err_code, ErrorCode.RATE_LIMITED);
  const pc3 = new PortcullisClient({ base: 'https://gw', storage: memoryStorage(), transport: async () => ({ status: 200, header: () => null, text: '{"token":1}' }) });
  assert.equal((await pc3.getClearance()).err_code, ErrorCode.BAD_RESPONSE);
  const pc4 = new PortcullisClient({ base: 'https://gw', storage: memoryStorage(), timeoutMs: 20, transport: () => new Promise(() => {}) });
  assert.equal((await pc4.getClearance()).err_code, ErrorCode.TIMEOUT);
});

test('solve finds a valid counter and yields between slices', async () => {
  const nonce = new Uint8Array(16).map((_, i) => i);
  assert.equal(await solve(nonce, 16), 56427);
});

test('pc.fetch signs requests to the gateway and leaves others alone', async () => {
  const { gw, pc } = setup();
  const seen = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input, init = {}) => {
    const req = new Request(input, init);
    const u = new URL(req.url);
    const headers = {};
    req.headers.forEach((v, k) => { headers[k] = v; });
    const body = Buffer.from(await req.arrayBuffer());
    seen.push({ url: req.url, headers });
    if (u.origin !== 'https://gw.example') return new Response('other');
    const err = gw.check({ method: req.method, path: u.pathname, query: u.search ? u.search.slice(1) : (req.url.includes('?') ? '' : null), headers, body });
    if (err === 'clearance') return new Response('{}', { status: 401, headers: { 'x-pc-error': 'clearance_expired' } });
    return new Response(JSON.stringify({ err }), { status: err ? 403 : 200 });
  };
  try {
    let res = await pc.fetch('https://gw.example/api/coupon/claim?campaign=spring&n=1', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sku: 'A-100', qty: 1 }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    res = await pc.fetch('https://gw.example/api/list');
    assert.equal(res.status, 200, await res.clone().text());
    const last = seen[seen.length - 1].headers;
    assert.equal(last['content-digest'], 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');
    // form bodies are digested as sent
    const form = new URLSearchParams({ a: '1', b: 'x y' });
    res = await pc.fetch('https://gw.example/api/form', { method: 'PUT', body: form });
    assert.equal(res.status, 200, await res.clone().text());
    // other origins get no clearance
    res = await pc.fetch('https://cdn.example/x.js');
    assert.equal(await res.text(), 'other');
    assert.equal(seen[seen.length - 1].headers['x-pc-clearance'], undefined);
    // the gateway forgot the clearance: one re-check and retry
    gw.clearances.clear();
    const before = gw.calls.length;
    res = await pc.fetch('https://gw.example/api/again', { method: 'POST', body: 'hi' });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(gw.calls.length, before + 2);
  } finally {
    globalThis.fetch = realFetch;
  }
});

test('captcha_required runs the captcha handler instead of the work', async () => {
  const calls = [];
  const { gw, pc } = setup({
    captcha: async (puzzle, urls) => {
      calls.push({ puzzle, urls });
      return { x: 101.5, trace: [[0, 0, 0], [40, 50, 1], [90, 101, 2]] };
    },
  });
  gw.captcha = true;
  const r = await pc.getClearance();
  assert.equal(r.success, true, JSON.stringify(r));
  assert.equal(calls.length, 1);
  assert.equal(calls[0].urls.bg, 'https://gw.example/.portcullis/captcha/bg?token=cap-1');
  assert.equal(calls[0].urls.piece, 'https://gw.example/.portcullis/captcha/piece?token=cap-1');
  assert.deepEqual(gw.lastAnswer.trace[1], [40, 50, 1]);
});

test('captcha cancelled, failed, or not offered', async () => {
  let s = setup({ captcha: async () => { throw new Error('closed'); } });
  s.gw.captcha = true;
  assert.equal((await s.pc.getClearance()).err_code, ErrorCode.CAPTCHA_CANCELLED);
  s = setup({ captcha: async () => ({ x: 10, trace: [] }) });
  s.gw.captcha = true;
  assert.equal((await s.pc.getClearance()).err_code, ErrorCode.CAPTCHA_FAILED);
  s = setup({ captcha: false });
  s.gw.captcha = true;
  assert.equal((await s.pc.getClearance()).err_code, ErrorCode.REJECTED);
});
