// The part of the mini-program API (`wx`) the SDK uses, as the WeChat
// client behaves: wx.request over real HTTP (JSON parsed unless dataType
// says otherwise, the client's own user agent and referer, `fail` with an
// errMsg), synchronous storage, random values and device information.
// The signatures are the official typings' (miniprogram-api-typings), which
// e2e/miniprogram/tsconfig.json holds the SDK's calls to.

import http from 'node:http';
import { webcrypto } from 'node:crypto';

const UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x18003237) NetType/WIFI Language/zh_CN miniProgram/wx0123456789abcdef';
const REFERER = 'https://servicewechat.com/wx0123456789abcdef/12/page-frame.html';

const DEVICE = {
  platform: 'ios', brand: 'iPhone', model: 'iPhone 15', system: 'iOS 17.5',
  screenWidth: 393, screenHeight: 852, pixelRatio: 3, language: 'zh_CN', version: '8.0.50', SDKVersion: '3.5.0',
};

function queryOf(data) {
  return Object.entries(data)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v == null ? '' : String(v))}`)
    .join('&');
}

/** A fresh phone: its own storage. `calls` records every wx.request. */
export function makeWx() {
  const storage = new Map();
  const calls = [];
  const wx = {
    request({ url, method = 'GET', header = {}, data, dataType = 'json', responseType = 'text', success, fail, complete }) {
      let target = url;
      let body;
      if (data != null) {
        if (typeof data === 'string') body = data;
        else if (data instanceof ArrayBuffer) body = Buffer.from(data);
        else if (method === 'GET') target += (target.includes('?') ? '&' : '?') + queryOf(data);
        else body = JSON.stringify(data);
      }
      const headers = { 'content-type': 'application/json', 'user-agent': UA, referer: REFERER, ...header };
      calls.push({ url: target, method, header: headers, body });
      const done = (ok, result) => {
        (ok ? success : fail)?.(result);
        complete?.(result);
      };
      const req = http.request(target, { method, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          let out = responseType === 'arraybuffer' ? raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length) : raw.toString('utf8');
          if (dataType === 'json' && typeof out === 'string') {
            try { out = JSON.parse(out); } catch { /* stays text, as in WeChat */ }
          }
          done(true, { statusCode: res.statusCode, header: res.headers, data: out, cookies: [], errMsg: 'request:ok' });
        });
      });
      req.on('error', (e) => done(false, { errMsg: `request:fail ${e.message}` }));
      req.end(body);
      return { abort: () => req.destroy() };
    },
    getStorageSync: (key) => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => { storage.set(key, value); },
    getRandomValues({ length, success, complete }) {
      const result = { randomValues: webcrypto.getRandomValues(new Uint8Array(length)).buffer, errMsg: 'getRandomValues:ok' };
      success?.(result);
      complete?.(result);
    },
    getDeviceInfo: () => ({ ...DEVICE }),
    getWindowInfo: () => ({ ...DEVICE }),
    getAppBaseInfo: () => ({ ...DEVICE }),
    getSystemInfoSync: () => ({ ...DEVICE }),
  };
  return { wx, calls, storage };
}
