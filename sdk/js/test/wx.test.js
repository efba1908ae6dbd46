// Mini-program path: wx storage, wx.request transport, wxRequest wrapper,
// pure-JS HMAC (no WebCrypto in the mini-program runtime).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MockGateway } from './mockgw.js';

test('wxRequest signs with the pure-JS fallback', async () => {
  const gw = new MockGateway();
  const store = new Map();
  const requests = [];
  globalThis.wx = {
    getStorageSync: (k) => store.get(k) || '',
    setStorageSync: (k, v) => store.set(k, v),
    getSystemInfoSync: () => ({ platform: 'android', brand: 'Acme', model: 'P1', system: 'Android 14', screenWidth: 393, screenHeight: 852, pixelRatio: 2.75, language: 'zh_CN' }),
    request(opts) {
      requests.push(opts);
      const u = new URL(opts.url);
      if (u.pathname.startsWith('/.portcullis/')) {
        gw.transport(opts.method, opts.url, opts.header, opts.data).then((r) => opts.success({ statusCode: r.status, header: {}, data: r.text }));
        return;
      }
      const query = opts.url.includes('?') ? opts.url.slice(opts.url.indexOf('?') + 1) : null;
      const err = gw.check({ method: opts.method, path: u.pathname, query, headers: opts.header, body: opts.data == null ? undefined : Buffer.from(opts.data) });
      setTimeout(() => opts.success({ statusCode: err ? 403 : 200, header: {}, data: { err } }), 0);
    },
  };
  const saved = globalThis.crypto;
  Object.defineProperty(globalThis, 'crypto', { value: { getRandomValues: (a) => saved.getRandomValues(a) }, configurable: true });
  try {
    const { configure, start, getClearance, wxRequest } = await import('../src/index.js');
    configure({ base: 'https://gw.example' });
    await start();
    const r = await getClearance();
    assert.equal(r.success, true);
    assert.equal(gw.lastReport.runtime, 'miniprogram');
    assert.equal(gw.lastReport.platform, 'android');
    let res = await wxRequest({ url: '/api/vote', method: 'POST', data: { id: 7, note: '投票' } });
    assert.equal(res.statusCode, 200, JSON.stringify(res.data));
    let cb = null;
    res = await wxRequest({ url: 'https://gw.example/api/list', data: { page: 2, q: 'a b' }, success: (x) => { cb = x; } });
    assert.equal(res.statusCode, 200, JSON.stringify(res.data));
    assert.equal(cb, res);
    const last = requests[requests.length - 1];
    assert.equal(last.url, 'https://gw.example/api/list?page=2&q=a%20b');
    assert.equal(last.data, undefined);
  } finally {
    Object.defineProperty(globalThis, 'crypto', { value: saved, configurable: true });
    delete globalThis.wx;
  }
});
