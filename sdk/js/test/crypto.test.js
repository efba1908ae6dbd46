import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { sha256, hmacSha256, base64, base64url, fromBase64, hex, utf8, hashcashSearch } from '../src/crypto.js';

test('sha256 matches known answers and node:crypto', () => {
  assert.equal(hex(sha256('')), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(hex(sha256('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  for (const n of [1, 55, 56, 63, 64, 65, 119, 120, 1000, 4097]) {
    const b = randomBytes(n);
    assert.equal(hex(sha256(new Uint8Array(b))), createHash('sha256').update(b).digest('hex'), `len ${n}`);
  }
});

test('hmac-sha256 matches RFC 4231 and node:crypto', () => {
  // RFC 4231 test case 2
  assert.equal(hex(hmacSha256('Jefe', 'what do ya want for nothing?')),
    '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  const longKey = new Uint8Array(131).fill(0xaa); // test case 6: key longer than a block
  assert.equal(hex(hmacSha256(longKey, 'Test Using Larger Than Block-Size Key - Hash Key First')),
    '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54');
  const k = randomBytes(32), d = randomBytes(300);
  assert.equal(hex(hmacSha256(new Uint8Array(k), new Uint8Array(d))), createHmac('sha256', k).update(d).digest('hex'));
});

test('utf8 and base64 round trips', () => {
  assert.deepEqual(Array.from(utf8('é😀')), Array.from(Buffer.from('é😀')));
  for (const n of [0, 1, 2, 3, 4, 31, 32, 33]) {
    const b = new Uint8Array(randomBytes(n));
    assert.equal(base64(b), Buffer.from(b).toString('base64'));
    assert.equal(base64url(b), Buffer.from(b).toString('base64url'));
    assert.deepEqual(fromBase64(base64url(b)), b);
    assert.deepEqual(fromBase64(base64(b)), b);
  }
  assert.throws(() => fromBase64('a*b'));
});

test('hashcash search agrees with the Rust vector', async () => {
  const v = JSON.parse(await (await import('node:fs/promises')).readFile(new URL('./vector.json', import.meta.url), 'utf8'));
  const nonce = Uint8Array.from(Buffer.from(v.pow.nonce_hex, 'hex'));
  assert.equal(hashcashSearch(nonce, v.pow.difficulty, 0, 1 << 22), v.pow.counter);
  const buf = Buffer.concat([Buffer.from(nonce), Buffer.alloc(8)]);
  buf.writeBigUInt64BE(BigInt(v.pow.counter), 16);
  assert.equal(createHash('sha256').update(buf).digest('hex'), v.pow.hash_hex);
  // counters above 2^32 use the high word
  const big = 2 ** 32 + 5;
  const found = hashcashSearch(nonce, 0, big, 1);
  assert.equal(found, big);
  // search windows: nothing before the answer
  assert.equal(hashcashSearch(nonce, v.pow.difficulty, 0, v.pow.counter), -1);
  assert.equal(hashcashSearch(nonce, v.pow.difficulty, v.pow.counter, 1), v.pow.counter);
});
