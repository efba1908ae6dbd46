// Request signing per HTTP Message Signatures (RFC 9421, hmac-sha256) over a
// Content-Digest (RFC 9530). Pure functions; see PROTOCOL.md.

import { base64, hmacSha256, sha256, utf8 } from './crypto.js';

/** Components the SDK covers, in this order (the gateway requires them). */
export const COMPONENTS = ['@method', '@path', '@query', 'content-digest', 'x-pc-clearance'];
export const LABEL = 'pc';
export const ALG = 'hmac-sha256';

/** `sha-256=:<base64>:` for a body (Uint8Array or string). */
export function contentDigest(body) {
  return 'sha-256=:' + base64(sha256(body == null ? new Uint8Array(0) : body)) + ':';
}

function sfString(s) {
  if (typeof s !== 'string' || /[^\x20-\x7e]/.test(s)) throw new TypeError('not a structured-field string: ' + s);
  return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
}

/**
 * The serialized inner list: the `@signature-params` value and the
 * Signature-Input member value. Parameter order: created, nonce, keyid, alg.
 */
export function serializeParams({ components = COMPONENTS, created, nonce, keyid, alg = ALG }) {
  if (!Number.isInteger(created) || created < 0) throw new TypeError('created must be unix seconds');
  let s = '(' + components.map(sfString).join(' ') + ');created=' + created;
  if (nonce != null) s += ';nonce=' + sfString(nonce);
  s += ';keyid=' + sfString(keyid);
  if (alg != null) s += ';alg=' + sfString(alg);
  return s;
}

/**
 * Splits an absolute or origin-relative URL into the parts RFC 9421's derived
 * components use, without the URL class (absent in some mini-program
 * runtimes). `query` is null when there is no `?`.
 */
export function splitUrl(url, base) {
  let rest = String(url);
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  let scheme = '', authority = '';
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?]*)(.*)$/.exec(rest);
  if (m) { scheme = m[1]; authority = m[2]; rest = m[3]; }
  else if (base) { const b = splitUrl(base); scheme = b.scheme; authority = b.authority; }
  const q = rest.indexOf('?');
  const path = (q >= 0 ? rest.slice(0, q) : rest) || '/';
  const query = q >= 0 ? rest.slice(q + 1) : null;
  return { scheme: scheme.toLowerCase(), authority: authority.toLowerCase(), path, query };
}

/**
 * The RFC 9421 signature base. `target`: {method, scheme, authority, path,
 * query}; `header(name)`: the field value for a lowercase name, or
 * undefined. Returns a string (the covered values are ASCII in practice;
 * it is UTF-8 encoded before the HMAC).
 */
export function signatureBase(target, header, components, paramsValue) {
  const lines = [];
  for (const c of components) {
    let v;
    switch (c) {
      case '@method': v = target.method; break;
      case '@path': v = target.path || '/'; break;
      case '@query': v = '?' + (target.query == null ? '' : target.query); break;
      case '@authority': v = target.authority.toLowerCase(); break;
      case '@scheme': v = target.scheme.toLowerCase(); break;
      case '@request-target': v = (target.path || '/') + (target.query == null ? '' : '?' + target.query); break;
      case '@target-uri': v = target.scheme.toLowerCase() + '://' + target.authority.toLowerCase() + (target.path || '/') + (target.query == null ? '' : '?' + target.query); break;
      default: {
        if (c[0] === '@') throw new Error('unsupported component ' + c);
        const h = header(c);
        if (h == null) throw new Error('covered header missing: ' + c);
        v = String(h).trim();
      }
    }
    lines.push('"' + c + '": ' + v);
  }
  lines.push('"@signature-params": ' + paramsValue);
  return lines.join('\n');
}

/**
 * Signs a request. `key`: the 32-byte signing key (Uint8Array) or a
 * WebCrypto HMAC CryptoKey; `headers`: plain object with lowercase names
 * that already holds every covered header. Returns the two header values.
 */
export async function sign({ key, keyid, target, headers, created, nonce, components = COMPONENTS, label = LABEL }) {
  const params = serializeParams({ components, created, nonce, keyid, alg: ALG });
  const base = signatureBase(target, (n) => headers[n], components, params);
  let mac;
  if (key instanceof Uint8Array) mac = hmacSha256(key, utf8(base));
  else mac = new Uint8Array(await globalThis.crypto.subtle.sign('HMAC', key, utf8(base)));
  return { 'signature-input': label + '=' + params, signature: label + '=:' + base64(mac) + ':' };
}
