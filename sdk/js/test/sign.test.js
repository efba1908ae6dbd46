import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { webcrypto } from 'node:crypto';
import { contentDigest, serializeParams, signatureBase, splitUrl, sign, COMPONENTS } from '../src/sign.js';
import { fromBase64, hmacSha256, base64, utf8 } from '../src/crypto.js';

const v = JSON.parse(readFileSync(new URL('./vector.json', import.meta.url), 'utf8'));

function vectorRequest() {
  const headers = {
    'content-type': 'application/json',
    'content-digest': contentDigest(utf8(v.body)),
    'x-pc-clearance': v.clearance,
    'x-pc-device': v.device_id,
  };
  return { headers, target: { method: v.method, ...splitUrl(v.url) } };
}

test('content digest matches the vector', () => {
  assert.equal(contentDigest(utf8(v.body)), v.content_digest);
  assert.equal(contentDigest(new Uint8Array(0)), 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');
});

test('signature base and headers match the Rust vector (pure-JS HMAC)', async () => {
  const { headers, target } = vectorRequest();
  const params = serializeParams({ created: v.created, nonce: v.nonce, keyid: v.cid });
  assert.equal('pc=' + params, v.signature_input);
  assert.equal(signatureBase(target, (n) => headers[n], COMPONENTS, params), v.signature_base);
  const out = await sign({ key: fromBase64(v.signing_key), keyid: v.cid, target, headers, created: v.created, nonce: v.nonce });
  assert.equal(out['signature-input'], v.signature_input);
  assert.equal(out.signature, v.signature);
});

test('WebCrypto HMAC gives the same signature', async () => {
  const { headers, target } = vectorRequest();
  const key = await webcrypto.subtle.importKey('raw', fromBase64(v.signing_key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const saved = globalThis.crypto;
  const out = await sign({ key, keyid: v.cid, target, headers, created: v.created, nonce: v.nonce });
  assert.equal(globalThis.crypto, saved);
  assert.equal(out.signature, v.signature);
});

test('RFC 9421 B.2.5 (hmac-sha256, test-shared-secret)', () => {
  const secret = fromBase64('uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==');
  const comps = ['date', '@authority', 'content-type'];
  const params = serializeParams({ components: comps, created: 1618884473, keyid: 'test-shared-secret', alg: null });
  const headers = { date: 'Tue, 20 Apr 2021 02:07:55 GMT', 'content-type': 'application/json' };
  const target = { method: 'POST', ...splitUrl('https://example.com/foo?param=Value&Pet=dog') };
  const base = signatureBase(target, (n) => headers[n], comps, params);
  assert.equal(base, '"date": Tue, 20 Apr 2021 02:07:55 GMT\n"@authority": example.com\n"content-type": application/json\n"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"');
  assert.equal(base64(hmacSha256(secret, utf8(base))), 'pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=');
});

test('derived components follow RFC 9421', () => {
  assert.deepEqual(splitUrl('HTTPS://Api.Example.com:8443/a/b?x=1&y=%20#frag'), { scheme: 'https', authority: 'api.example.com:8443', path: '/a/b', query: 'x=1&y=%20' });
  assert.deepEqual(splitUrl('https://h'), { scheme: 'https', authority: 'h', path: '/', query: null });
  assert.deepEqual(splitUrl('/p?', 'https://h/'), { scheme: 'https', authority: 'h', path: '/p', query: '' });
  const t = { method: 'GET', ...splitUrl('https://h/p') };
  const base = signatureBase(t, () => ' v ', ['@method', '@path', '@query', '@request-target', '@target-uri', 'x-a'], '()');
  assert.equal(base, '"@method": GET\n"@path": /p\n"@query": ?\n"@request-target": /p\n"@target-uri": https://h/p\n"x-a": v\n"@signature-params": ()');
  assert.throws(() => signatureBase(t, () => undefined, ['x-missing'], '()'));
  assert.throws(() => serializeParams({ created: 1, keyid: 'é' }));
  assert.equal(serializeParams({ components: ['a'], created: 1, keyid: 'q"\\' , alg: null}), '("a");created=1;keyid="q\\"\\\\"');
});
