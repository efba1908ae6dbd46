// @portcullis/sdk: silent human-machine check, session clearance and signed
// requests for a Portcullis gateway. Browser and mini-program; no
// dependencies. Wire format: crates/challenge/PROTOCOL.md.

import { base64url, fromBase64, hashcashSearch, utf8 } from './crypto.js';
import { InteractionCounter, collectReport, runtime, wxApi } from './env.js';
import { contentDigest, sign, splitUrl } from './sign.js';
import { sliderCaptcha } from './captcha.js';

export { contentDigest, serializeParams, signatureBase, splitUrl, sign, COMPONENTS } from './sign.js';
export { sha256, hmacSha256, base64, base64url, fromBase64, hashcashSearch, utf8, hex } from './crypto.js';
export { collectReport, platformOf, headlessMarkers, SDK_VERSION } from './env.js';
export { sliderCaptcha } from './captcha.js';

/** Typed error codes of ChallengeResult.err_code. */
export const ErrorCode = Object.freeze({
  OK: 0,
  NETWORK: 1001,
  HTTP: 1002,
  CHALLENGE_EXPIRED: 1003,
  BAD_SOLUTION: 1004,
  REPLAYED: 1005,
  REJECTED: 1006,
  TIMEOUT: 1007,
  UNSUPPORTED: 1008,
  BAD_RESPONSE: 1009,
  WRONG_CLIENT: 1010,
  RATE_LIMITED: 1011,
  CAPTCHA_CANCELLED: 1012,
  CAPTCHA_FAILED: 1013,
});

/** Gateway `error` strings -> err_code. */
const SERVER_ERRORS = {
  expired: ErrorCode.CHALLENGE_EXPIRED,
  bad_solution: ErrorCode.BAD_SOLUTION,
  replayed: ErrorCode.REPLAYED,
  rejected: ErrorCode.REJECTED,
  captcha_required: ErrorCode.REJECTED,
  wrong_device: ErrorCode.WRONG_CLIENT,
  wrong_network: ErrorCode.WRONG_CLIENT,
  invalid_device: ErrorCode.WRONG_CLIENT,
  rate_limited: ErrorCode.RATE_LIMITED,
  malformed: ErrorCode.HTTP,
  bad_signature: ErrorCode.HTTP,
  wrong_answer: ErrorCode.CAPTCHA_FAILED,
  robot_trace: ErrorCode.CAPTCHA_FAILED,
};

const g = typeof globalThis !== 'undefined' ? globalThis : {};
const DEVICE_KEY = 'portcullis.device';

class PcError extends Error {
  constructor(code, message, server) { super(message); this.code = code; this.server = server || null; }
}

function now() { return Date.now(); }
function mono() { return g.performance && g.performance.now ? g.performance.now() : Date.now(); }

/** Yields to the event loop without the 4 ms setTimeout clamp where possible. */
function yieldNow() {
  if (typeof g.MessageChannel === 'function') {
    return new Promise((r) => {
      const ch = new g.MessageChannel();
      ch.port1.onmessage = () => { ch.port1.close(); r(); };
      ch.port2.postMessage(0);
    });
  }
  return new Promise((r) => setTimeout(r, 0));
}

async function randomBytes(n) {
  const out = new Uint8Array(n);
  if (g.crypto && typeof g.crypto.getRandomValues === 'function') return g.crypto.getRandomValues(out);
  const wx = wxApi();
  if (wx && typeof wx.getRandomValues === 'function') {
    try {
      /** @type {ArrayBuffer} */
      const buf = await new Promise((res, rej) => wx.getRandomValues({ length: n, success: (r) => res(r.randomValues), fail: rej }));
      return new Uint8Array(buf);
    } catch { /* fall through */ }
  }
  for (let i = 0; i < n; i++) out[i] = Math.floor(Math.random() * 256);
  return out;
}

function defaultStorage() {
  const wx = wxApi();
  if (wx && typeof wx.getStorageSync === 'function') {
    return { get: (k) => wx.getStorageSync(k) || null, set: (k, v) => wx.setStorageSync(k, v) };
  }
  try {
    const ls = g.localStorage;
    if (ls) { ls.getItem('x'); return { get: (k) => ls.getItem(k), set: (k, v) => ls.setItem(k, v) }; }
  } catch { /* storage blocked */ }
  const mem = new Map();
  return { get: (k) => mem.get(k) || null, set: (k, v) => mem.set(k, v) };
}

/** Default transport: fetch in browsers, wx.request in mini-programs. */
function defaultTransport() {
  const wx = wxApi();
  if (wx) {
    return (method, url, headers, body) => new Promise((resolve, reject) => {
      // Any dataType but 'json' leaves the body as text (the SDK parses it).
      wx.request({
        url, method, header: headers, data: body == null ? undefined : body, dataType: 'text', responseType: 'text',
        success: (r) => resolve({ status: r.statusCode, header: (n) => lowerGet(r.header, n), text: typeof r.data === 'string' ? r.data : JSON.stringify(r.data) }),
        fail: (e) => reject(new PcError(ErrorCode.NETWORK, (e && e.errMsg) || 'request failed')),
      });
    });
  }
  if (typeof g.fetch === 'function') {
    return async (method, url, headers, body) => {
      const r = await g.fetch(url, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
      return { status: r.status, header: (n) => r.headers.get(n), text: await r.text() };
    };
  }
  return null;
}

function lowerGet(obj, name) {
  if (!obj) return null;
  for (const k of Object.keys(obj)) if (k.toLowerCase() === name) return obj[k];
  return null;
}

/**
 * One client per gateway. Options:
 * - `base`: gateway origin ('' = same origin in browsers; required in mini-programs)
 * - `prefix`: reserved path prefix (default '/.portcullis')
 * - `origins`: extra origins whose requests pc.fetch signs (default: the base's)
 * - `timeoutMs`: whole check budget (default 15000)
 * - `captcha`: what to do when the gateway requires a captcha: true (default:
 *   the built-in slider in browsers), false, or `(puzzle, urls) => Promise<{x, trace}>`
 * - `captchaText`: labels of the built-in slider ({title, hint, handle, cancel})
 * - `cookie`: also receive the clearance as a cookie (the gateway's
 *   interstitial page uses it so that browser navigations carry it)
 * - `storage`, `transport`: adapters (tests, custom runtimes)
 */
export class PortcullisClient {
  constructor(opts = {}) {
    this.base = (opts.base || '').replace(/\/+$/, '');
    this.prefix = opts.prefix || '/.portcullis';
    this.timeoutMs = opts.timeoutMs || 15000;
    this.storage = opts.storage || defaultStorage();
    this.transport = opts.transport || defaultTransport();
    this.origins = new Set((opts.origins || []).map((o) => o.toLowerCase()));
    this.captcha = opts.captcha === undefined ? true : opts.captcha;
    this.captchaText = opts.captchaText || {};
    this.verifyPath = opts.cookie ? '/verify?cookie=1' : '/verify';
    this.counter = new InteractionCounter();
    this.startedAt = null;
    this.clearance = null; // {cid, token, key (Uint8Array), cryptoKey, expires}
    this.clockOffset = 0; // server_time - Date.now()
    this.inflight = null;
    this.successCbs = new Set();
    this.failCbs = new Set();
    this.lastResult = null;
  }

  /** Starts the silent check once; later calls return the same promise. */
  start() {
    if (!this.startedAt) {
      this.startedAt = mono();
      this.counter.listen();
      this._started = this.getClearance().then(() => undefined);
    }
    return this._started;
  }

  /**
   * The session's clearance: resolves `{ err_code, success, cid }`, never
   * rejects. A success is cached until the clearance nears expiry; after a
   * failure the next call runs the check again.
   */
  getClearance() {
    if (this._valid()) return Promise.resolve({ err_code: 0, success: true, cid: this.clearance.cid });
    if (!this.startedAt) { this.startedAt = mono(); this.counter.listen(); }
    if (!this.inflight) {
      this.inflight = this._runCheck().finally(() => { this.inflight = null; });
    }
    return this.inflight;
  }

  /** Calls `cb(result)` on every successful check. Returns an unsubscribe function. */
  onChallengeSuccess(cb) { this.successCbs.add(cb); return () => this.successCbs.delete(cb); }

  /** Calls `cb(result)` on every failed check. Returns an unsubscribe function. */
  onChallengeFail(cb) { this.failCbs.add(cb); return () => this.failCbs.delete(cb); }

  /** Mini-programs: count a user interaction ('pointer' | 'key' | 'touch' | 'scroll'). */
  recordInteraction(kind) { this.counter.record(kind); }

  /** Drops the clearance (e.g. after the gateway said it is revoked). */
  reset() { this.clearance = null; }

  /** The persistent random device id (22 base64url chars). */
  async deviceId() {
    if (this._device) return this._device;
    let id = null;
    try { id = this.storage.get(DEVICE_KEY); } catch { /* ignore */ }
    if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
      id = base64url(await randomBytes(16));
      try { this.storage.set(DEVICE_KEY, id); } catch { /* ignore */ }
    }
    this._device = id;
    return id;
  }

  /** Server time in unix seconds, by the offset learnt from the gateway. */
  serverNowSeconds() { return Math.floor((now() + this.clockOffset) / 1000); }

  _valid() {
    return !!this.clearance && now() + this.clockOffset < this.clearance.expires - 30000;
  }

  async _runCheck() {
    let result;
    try {
      const deadline = mono() + this.timeoutMs;
      let attempt = 0;
      for (;;) {
        try {
          result = await this._checkOnce(deadline);
          break;
        } catch (e) {
          // A challenge that expired or was raced gets one fresh try.
          if (attempt++ === 0 && e instanceof PcError && (e.code === ErrorCode.CHALLENGE_EXPIRED || e.code === ErrorCode.REPLAYED)) continue;
          throw e;
        }
      }
    } catch (e) {
      const code = e instanceof PcError ? e.code : ErrorCode.NETWORK;
      result = { err_code: code, success: false, cid: '' };
      this.lastResult = result;
      for (const cb of this.failCbs) { try { cb(result); } catch { /* user callback */ } }
      return result;
    }
    this.lastResult = result;
    for (const cb of this.successCbs) { try { cb(result); } catch { /* user callback */ } }
    return result;
  }

  async _call(method, path, body, deadline) {
    if (!this.transport) throw new PcError(ErrorCode.UNSUPPORTED, 'no fetch or wx.request');
    const headers = { accept: 'application/json', 'x-pc-device': await this.deviceId() };
    if (body != null) headers['content-type'] = 'application/json';
    const left = deadline - mono();
    if (left <= 0) throw new PcError(ErrorCode.TIMEOUT, 'timeout');
    let timer;
    const timeout = new Promise((_, rej) => { timer = setTimeout(() => rej(new PcError(ErrorCode.TIMEOUT, 'timeout')), left); });
    let r;
    try {
      r = await Promise.race([this.transport(method, this.base + this.prefix + path, headers, body), timeout]);
    } catch (e) {
      throw e instanceof PcError ? e : new PcError(ErrorCode.NETWORK, String(e && e.message));
    } finally { clearTimeout(timer); }
    let json = null;
    try { json = JSON.parse(r.text); } catch { /* handled below */ }
    if (r.status >= 200 && r.status < 300) {
      if (!json || typeof json !== 'object') throw new PcError(ErrorCode.BAD_RESPONSE, 'bad json');
      return json;
    }
    if (r.status === 429) throw new PcError(ErrorCode.RATE_LIMITED, 'rate limited');
    const code = json && SERVER_ERRORS[json.error];
    throw new PcError(code || ErrorCode.HTTP, 'http ' + r.status, json && json.error);
  }

  async _checkOnce(deadline) {
    let ch;
    try {
      ch = await this._call('GET', '/challenge', null, deadline);
    } catch (e) {
      const handler = this._captchaHandler();
      if (e instanceof PcError && e.server === 'captcha_required' && handler) return this._captchaFlow(handler);
      throw e;
    }
    if (typeof ch.token !== 'string' || typeof ch.nonce !== 'string' || ch.algorithm !== 'sha256-hashcash' ||
      !Number.isInteger(ch.difficulty) || ch.difficulty < 0 || ch.difficulty > 32) {
      throw new PcError(ErrorCode.BAD_RESPONSE, 'bad challenge');
    }
    if (Number.isFinite(ch.server_time)) this.clockOffset = ch.server_time - now();
    const nonce = fromBase64(ch.nonce);
    const t0 = mono();
    const solution = await solve(nonce, ch.difficulty, deadline);
    const solveMs = mono() - t0;
    const report = collectReport(this.counter, { solve_ms: solveMs, since_start_ms: mono() - this.startedAt });
    const v = await this._call('POST', this.verifyPath, JSON.stringify({ token: ch.token, solution, report }), deadline);
    return this._accept(v, solveMs);
  }

  _captchaHandler() {
    if (typeof this.captcha === 'function') return this.captcha;
    // The built-in slider is a DOM overlay: a mini-program has no DOM.
    if (this.captcha && runtime() !== 'miniprogram' && g.document && g.document.body) {
      return (puzzle, urls) => sliderCaptcha(g.document, puzzle, urls, this.captchaText);
    }
    return null;
  }

  /** Rank 4: the gateway wants a captcha instead of (not besides) the work. */
  async _captchaFlow(handler) {
    const deadline = mono() + 180000; // a person needs time; the puzzle itself expires sooner
    const pz = await this._call('GET', '/captcha', null, deadline);
    if (typeof pz.token !== 'string' || !Number.isInteger(pz.width) || !Number.isInteger(pz.piece)) {
      throw new PcError(ErrorCode.BAD_RESPONSE, 'bad captcha');
    }
    const q = '?token=' + encodeURIComponent(pz.token);
    const root = this.base + this.prefix + '/captcha/';
    let answer;
    try {
      answer = await handler(pz, { bg: root + 'bg' + q, piece: root + 'piece' + q });
    } catch {
      throw new PcError(ErrorCode.CAPTCHA_CANCELLED, 'captcha cancelled');
    }
    const report = collectReport(this.counter, { solve_ms: 0, since_start_ms: mono() - this.startedAt });
    const v = await this._call('POST', this.verifyPath, JSON.stringify({ captcha: pz.token, answer, report }), deadline);
    return this._accept(v, 0);
  }

  async _accept(v, solveMs) {
    if (typeof v.cid !== 'string' || typeof v.clearance !== 'string' || typeof v.signing_key !== 'string') {
      throw new PcError(ErrorCode.BAD_RESPONSE, 'bad verify response');
    }
    if (Number.isFinite(v.server_time)) this.clockOffset = v.server_time - now();
    const key = fromBase64(v.signing_key);
    let cryptoKey = null;
    try {
      if (g.crypto && g.crypto.subtle) {
        cryptoKey = await g.crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      }
    } catch { cryptoKey = null; }
    this.clearance = { cid: v.cid, token: v.clearance, key, cryptoKey, expires: v.expires, risk: v.risk, solveMs };
    return { err_code: 0, success: true, cid: v.cid };
  }

  _shouldSign(absUrl) {
    const t = splitUrl(absUrl);
    const origin = t.scheme + '://' + t.authority;
    if (this.origins.has(origin)) return true;
    const base = this.base || (g.location ? g.location.origin : '');
    return !!base && origin === splitUrl(base + '/').scheme + '://' + splitUrl(base + '/').authority;
  }

  /** Headers to add to a request: device, clearance, digest, signature. */
  async signedHeaders(method, absUrl, bodyBytes, extraHeaders = {}) {
    const headers = {};
    headers['x-pc-device'] = await this.deviceId();
    if (!this.clearance) return headers;
    headers['x-pc-clearance'] = this.clearance.token;
    headers['content-digest'] = contentDigest(bodyBytes);
    const all = { ...lowerKeys(extraHeaders), ...headers };
    const sig = await sign({
      key: this.clearance.cryptoKey || this.clearance.key,
      keyid: this.clearance.cid,
      target: { method, ...splitUrl(absUrl) },
      headers: all,
      created: this.serverNowSeconds(),
      nonce: base64url(await randomBytes(16)),
    });
    return { ...headers, ...sig };
  }

  /**
   * fetch() that waits for the clearance, then attaches it and signs the
   * request. Requests to other origins go out untouched. A 401 whose
   * `x-pc-error` names a clearance or clock problem runs the check again
   * and retries once.
   */
  async fetch(input, init = {}) {
    const req = new Request(input, init);
    if (!this._shouldSign(req.url)) return g.fetch(req);
    await this.getClearance();
    const body = req.method === 'GET' || req.method === 'HEAD' ? new Uint8Array(0) : new Uint8Array(await req.arrayBuffer());
    const send = async () => {
      const headers = new Headers(req.headers);
      const extra = {};
      headers.forEach((v, k) => { extra[k] = v; });
      const add = await this.signedHeaders(req.method, req.url, body, extra);
      for (const [k, v] of Object.entries(add)) headers.set(k, v);
      return g.fetch(req.url, {
        method: req.method, headers, body: body.length ? body : undefined, credentials: req.credentials,
        cache: req.cache, redirect: req.redirect, referrer: req.referrer, referrerPolicy: req.referrerPolicy,
        integrity: req.integrity, keepalive: req.keepalive, signal: req.signal, mode: req.mode,
      });
    };
    let res = await send();
    if (res.status === 401 && retryable(res.headers.get('x-pc-error'))) {
      this.reset();
      const r = await this.getClearance();
      if (r.success) res = await send();
    }
    return res;
  }

  /**
   * wx.request() with clearance and signature. Same options as wx.request;
   * returns a promise of the success result as well as calling the
   * callbacks. `data` is serialized here (JSON, form, or query for GET) so
   * the digest covers exactly the bytes sent.
   */
  async wxRequest(options) {
    const wx = wxApi();
    if (!wx) throw new PcError(ErrorCode.UNSUPPORTED, 'wx.request missing');
    const method = (options.method || 'GET').toUpperCase();
    const header = { ...(options.header || {}) };
    let url = options.url;
    let data = options.data;
    const ctype = String(lowerGet(header, 'content-type') || 'application/json');
    if (method === 'GET' || method === 'HEAD') {
      if (data && typeof data === 'object') {
        const q = formEncode(data);
        if (q) url += (url.indexOf('?') >= 0 ? '&' : '?') + q;
      } else if (typeof data === 'string' && data) url += (url.indexOf('?') >= 0 ? '&' : '?') + data;
      data = undefined;
    } else if (data != null && typeof data === 'object' && !(data instanceof ArrayBuffer)) {
      data = /x-www-form-urlencoded/i.test(ctype) ? formEncode(data) : JSON.stringify(data);
    }
    const bytes = data == null ? new Uint8Array(0) : typeof data === 'string' ? utf8(data) : new Uint8Array(data);
    const go = async () => {
      await this.getClearance();
      const abs = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : this.base + url;
      const add = this._shouldSign(abs) ? await this.signedHeaders(method, abs, bytes, header) : {};
      return new Promise((resolve, reject) => {
        wx.request({ ...options, url: abs, method, header: { ...header, ...add }, data, success: resolve, fail: reject, complete: undefined });
      });
    };
    try {
      let res = await go();
      if (res.statusCode === 401 && retryable(lowerGet(res.header, 'x-pc-error'))) {
        this.reset();
        res = await go();
      }
      if (options.success) options.success(res);
      if (options.complete) options.complete(res);
      return res;
    } catch (e) {
      if (options.fail) options.fail(e);
      if (options.complete) options.complete(e);
      throw e;
    }
  }
}

function retryable(code) {
  return !!code && (code.startsWith('clearance_') || code === 'signature_stale' || code === 'challenge_required');
}

function lowerKeys(o) {
  const out = {};
  for (const k of Object.keys(o || {})) out[k.toLowerCase()] = o[k];
  return out;
}

function formEncode(obj) {
  return Object.keys(obj).filter((k) => obj[k] !== undefined)
    .map((k) => encodeURIComponent(k) + '=' + encodeURIComponent(obj[k] === null ? '' : String(obj[k]))).join('&');
}

/**
 * Finds the hashcash counter in slices of ~12 ms, yielding between slices so
 * the page stays responsive.
 */
export async function solve(nonce, difficulty, deadline = Infinity) {
  let start = 0;
  let chunk = 4096;
  for (;;) {
    const t = mono();
    const found = hashcashSearch(nonce, difficulty, start, chunk);
    if (found >= 0) return found;
    start += chunk;
    const dt = mono() - t;
    if (dt < 6) chunk *= 2; else if (dt > 20 && chunk > 4096) chunk >>= 1;
    if (mono() > deadline) throw new PcError(ErrorCode.TIMEOUT, 'timeout');
    await yieldNow();
  }
}

let defaultClient = null;

/** Configures the default client (call before start()). */
export function configure(opts) { defaultClient = new PortcullisClient(opts); return defaultClient; }

/** The default client (created on first use). */
export function client() { return defaultClient || (defaultClient = new PortcullisClient()); }

// The plugin surface of the original product, on the default client.
export const start = () => client().start();
export const getClearance = () => client().getClearance();
export const onChallengeSuccess = (cb) => client().onChallengeSuccess(cb);
export const onChallengeFail = (cb) => client().onChallengeFail(cb);
export const fetch = (input, init) => client().fetch(input, init);
export const wxRequest = (options) => client().wxRequest(options);

/**
 * Registers `<gateway-challenge>`: on connection it starts the check and
 * fires `challengesuccess` or `challengefail` (detail: the ChallengeResult).
 * Renders nothing. Done automatically in browsers with custom elements.
 */
export function defineGatewayChallenge(getClient = client, name = 'gateway-challenge') {
  if (typeof g.customElements === 'undefined' || typeof g.HTMLElement === 'undefined') return false;
  if (g.customElements.get(name)) return true;
  class GatewayChallenge extends g.HTMLElement {
    connectedCallback() {
      this.style.display = 'none';
      const c = getClient();
      c.start();
      c.getClearance().then((res) => {
        if (!this.isConnected) return;
        const type = res.success ? 'challengesuccess' : 'challengefail';
        this.dispatchEvent(new g.CustomEvent(type, { detail: res, bubbles: true, composed: true }));
      });
    }
  }
  g.customElements.define(name, GatewayChallenge);
  return true;
}

defineGatewayChallenge();
