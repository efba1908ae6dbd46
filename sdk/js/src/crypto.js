// Pure-JS primitives the SDK needs where WebCrypto is missing (mini-programs,
// old WebViews): UTF-8, base64 / base64url, SHA-256, HMAC-SHA256, and the
// hashcash inner loop. No dependencies; works in browsers, node and
// mini-program JS engines.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** UTF-8 bytes of a string (TextEncoder when present). */
export function utf8(str) {
  if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(str);
  const out = [];
  for (let i = 0; i < str.length; i++) {
    let c = str.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < str.length) {
      const d = str.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
      else c = 0xfffd;
    } else if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Standard base64 with padding (structured-field byte sequences). */
export function base64(bytes) {
  let s = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  if (i < bytes.length) {
    const n = (bytes[i] << 16) | ((i + 1 < bytes.length ? bytes[i + 1] : 0) << 8);
    s += B64[n >> 18] + B64[(n >> 12) & 63];
    s += i + 1 < bytes.length ? B64[(n >> 6) & 63] + '=' : '==';
  }
  return s;
}

/** base64url without padding (tokens, keys, ids). */
export function base64url(bytes) {
  return base64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decodes base64 or base64url, padded or not. Throws on bad input. */
export function fromBase64(str) {
  const s = str.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  if (/[^A-Za-z0-9+/]/.test(s) || s.length % 4 === 1) throw new Error('bad base64');
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    const n = (B64.indexOf(s[i]) << 18) | (B64.indexOf(s[i + 1]) << 12) |
      ((i + 2 < s.length ? B64.indexOf(s[i + 2]) : 0) << 6) | (i + 3 < s.length ? B64.indexOf(s[i + 3]) : 0);
    out[o++] = n >> 16;
    if (i + 2 < s.length) out[o++] = (n >> 8) & 255;
    if (i + 3 < s.length) out[o++] = n & 255;
  }
  return out;
}

export function hex(bytes) {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

function compress(H, W) {
  let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
  for (let t = 16; t < 64; t++) {
    const x = W[t - 15], y = W[t - 2];
    W[t] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
      (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + W[t - 7] + W[t - 16];
  }
  for (let t = 0; t < 64; t++) {
    const t1 = h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
      ((e & f) ^ (~e & g)) + K[t] + W[t] | 0;
    const t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
      ((a & b) ^ (a & c) ^ (b & c)) | 0;
    h = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
  }
  H[0] = H[0] + a | 0; H[1] = H[1] + b | 0; H[2] = H[2] + c | 0; H[3] = H[3] + d | 0;
  H[4] = H[4] + e | 0; H[5] = H[5] + f | 0; H[6] = H[6] + g | 0; H[7] = H[7] + h | 0;
}

/** Incremental SHA-256. */
export class Sha256 {
  constructor() {
    this.H = new Int32Array(IV);
    this.W = new Int32Array(64);
    this.buf = new Uint8Array(64);
    this.len = 0; // bytes in buf
    this.total = 0; // bytes hashed
  }
  update(data) {
    const bytes = typeof data === 'string' ? utf8(data) : data;
    for (let i = 0; i < bytes.length; i++) {
      this.buf[this.len++] = bytes[i];
      if (this.len === 64) this._block();
    }
    this.total += bytes.length;
    return this;
  }
  _block() {
    const W = this.W, B = this.buf;
    for (let i = 0; i < 16; i++) W[i] = (B[4 * i] << 24) | (B[4 * i + 1] << 16) | (B[4 * i + 2] << 8) | B[4 * i + 3];
    compress(this.H, W);
    this.len = 0;
  }
  digest() {
    const bits = this.total * 8;
    this.buf[this.len++] = 0x80;
    if (this.len > 56) { this.buf.fill(0, this.len); this._block(); }
    this.buf.fill(0, this.len);
    const hi = Math.floor(bits / 0x100000000);
    for (let i = 0; i < 4; i++) this.buf[56 + i] = (hi >>> (24 - 8 * i)) & 255;
    for (let i = 0; i < 4; i++) this.buf[60 + i] = (bits >>> (24 - 8 * i)) & 255;
    this._block();
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) {
      out[4 * i] = this.H[i] >>> 24; out[4 * i + 1] = this.H[i] >>> 16;
      out[4 * i + 2] = this.H[i] >>> 8; out[4 * i + 3] = this.H[i];
    }
    return out;
  }
}

export function sha256(data) {
  return new Sha256().update(data).digest();
}

/** HMAC-SHA256 (RFC 2104). key and data: Uint8Array or string. */
export function hmacSha256(key, data) {
  let k = typeof key === 'string' ? utf8(key) : key;
  if (k.length > 64) k = sha256(k);
  const ipad = new Uint8Array(64), opad = new Uint8Array(64);
  for (let i = 0; i < 64; i++) { ipad[i] = (k[i] || 0) ^ 0x36; opad[i] = (k[i] || 0) ^ 0x5c; }
  const inner = new Sha256().update(ipad).update(data).digest();
  return new Sha256().update(opad).update(inner).digest();
}

// One hashcash attempt: W[0..3] (nonce) and the padding words are set, S is
// the state after rounds 0-3 (which depend on the nonce only). Returns the
// first 32-bit word of the digest. A small function of its own so engines
// optimise it on the first chunk.
function attempt(W, S, hi, lo) {
  W[4] = hi; W[5] = lo;
  for (let t = 16; t < 64; t++) {
    const x = W[t - 15], y = W[t - 2];
    W[t] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
      (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + W[t - 7] + W[t - 16] | 0;
  }
  let a = S[0], b = S[1], c = S[2], d = S[3], e = S[4], f = S[5], g = S[6], h = S[7];
  for (let t = 4; t < 64; t++) {
    const t1 = h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[t] + W[t] | 0;
    const t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c)) | 0;
    h = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
  }
  return a + IV[0] | 0;
}

/**
 * Hashcash search: tries counters from `start` for `count` steps and returns
 * the first counter c with SHA-256(nonce16 || u64be(c)) starting with
 * `difficulty` (<= 32) zero bits, or -1. The 24-byte message is one block;
 * rounds 0-3 depend only on the nonce and are computed once.
 */
export function hashcashSearch(nonce16, difficulty, start, count) {
  const W = new Int32Array(64);
  for (let i = 0; i < 4; i++) W[i] = (nonce16[4 * i] << 24) | (nonce16[4 * i + 1] << 16) | (nonce16[4 * i + 2] << 8) | nonce16[4 * i + 3];
  W[6] = 0x80000000 | 0; W[15] = 192;
  let a = IV[0] | 0, b = IV[1] | 0, c = IV[2] | 0, d = IV[3] | 0, e = IV[4] | 0, f = IV[5] | 0, g = IV[6] | 0, h = IV[7] | 0;
  for (let t = 0; t < 4; t++) {
    const t1 = h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[t] + W[t] | 0;
    const t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c)) | 0;
    h = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
  }
  const S = new Int32Array([a, b, c, d, e, f, g, h]);
  const shift = 32 - difficulty;
  const end = start + count;
  for (let ctr = start; ctr < end; ctr++) {
    const x = attempt(W, S, (ctr / 0x100000000) | 0, ctr | 0);
    if (difficulty === 0 || (x >>> shift) === 0) return ctr;
  }
  return -1;
}
