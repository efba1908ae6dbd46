// A fake gateway for the SDK tests: issues hashcash challenges, checks the
// work with node:crypto, mints an opaque clearance and checks signatures
// with an independent HMAC (node:crypto), so the SDK's wiring is tested
// against the wire format rather than against itself.
import { createHash, createHmac, randomBytes } from 'node:crypto';

export class MockGateway {
  constructor() {
    this.calls = [];
    this.difficulty = 8;
    this.failVerify = []; // queue of {status, error}
    this.now = () => Date.now();
    this.clearances = new Map(); // cid -> {key, token, device}
    this.seenNonces = new Set();
  }

  transport = async (method, url, headers, body) => {
    this.calls.push({ method, url, headers, body });
    const path = new URL(url, 'https://gw.example').pathname;
    if (method === 'GET' && path === '/.portcullis/challenge' && this.captcha) {
      return this.json(403, { error: 'captcha_required' });
    }
    if (method === 'GET' && path === '/.portcullis/captcha') {
      return this.json(200, { token: 'cap-1', width: 240, height: 120, piece: 40, piece_y: 30, expires: this.now() + 120000 });
    }
    if (method === 'GET' && path === '/.portcullis/challenge') {
      const nonce = randomBytes(16);
      this.lastNonce = nonce;
      return this.json(200, { token: 't.' + nonce.toString('base64url'), algorithm: 'sha256-hashcash', difficulty: this.difficulty, nonce: nonce.toString('base64url'), expires: this.now() + 120000, server_time: this.now() });
    }
    if (method === 'POST' && path === '/.portcullis/verify') {
      const req = JSON.parse(body);
      this.lastReport = req.report;
      if (req.captcha) {
        this.lastAnswer = req.answer;
        if (req.captcha !== 'cap-1' || Math.abs(req.answer.x - 100) > 4) return this.json(400, { error: 'wrong_answer' });
        return this.mint(headers);
      }
      const f = this.failVerify.shift();
      if (f) return this.json(f.status, { error: f.error });
      const nonce = Buffer.from(req.token.slice(2), 'base64url');
      const buf = Buffer.alloc(24); nonce.copy(buf); buf.writeBigUInt64BE(BigInt(req.solution), 16);
      const h = createHash('sha256').update(buf).digest();
      const bits = h.readUInt32BE(0);
      if (this.difficulty > 0 && bits >>> (32 - this.difficulty) !== 0) return this.json(400, { error: 'bad_solution' });
      return this.mint(headers);
    }
    return this.json(404, { error: 'not_found' });
  };

  mint(headers) {
    {
      const cid = randomBytes(16).toString('base64url');
      const key = randomBytes(32);
      const token = 'clr.' + cid;
      this.clearances.set(cid, { key, token, device: headers['x-pc-device'] });
      return this.json(200, { cid, clearance: token, signing_key: key.toString('base64url'), expires: this.now() + 4 * 3600e3, risk: 0, server_time: this.now() });
    }
  }

  json(status, obj) {
    const text = JSON.stringify(obj);
    return { status, header: () => null, text };
  }

  /** Verifies a signed request the way the gateway does; returns an error string or null. */
  check({ method, path, query, headers, body }) {
    const h = (n) => headers[n];
    const input = h('signature-input'), sig = h('signature');
    if (!input || !sig) return 'missing';
    const m = /^pc=(\((.*?)\);created=(\d+);nonce="([^"]+)";keyid="([^"]+)";alg="hmac-sha256")$/.exec(input);
    if (!m) return 'invalid';
    const [, params, comps, , nonce, keyid] = m;
    const c = this.clearances.get(keyid);
    if (!c || h('x-pc-clearance') !== c.token || h('x-pc-device') !== c.device) return 'clearance';
    const lines = comps.split(' ').map((q) => q.slice(1, -1)).map((name) => {
      const val = name === '@method' ? method : name === '@path' ? path : name === '@query' ? '?' + (query ?? '') : h(name).trim();
      return `"${name}": ${val}`;
    });
    lines.push('"@signature-params": ' + params);
    const mac = createHmac('sha256', c.key).update(lines.join('\n')).digest('base64');
    if (sig !== `pc=:${mac}:`) return 'mismatch';
    const digest = 'sha-256=:' + createHash('sha256').update(body || Buffer.alloc(0)).digest('base64') + ':';
    if (h('content-digest') !== digest) return 'digest';
    if (this.seenNonces.has(keyid + nonce)) return 'replay';
    this.seenNonces.add(keyid + nonce);
    return null;
  }
}

export function memoryStorage() {
  const m = new Map();
  return { get: (k) => m.get(k) ?? null, set: (k, v) => m.set(k, v), map: m };
}
