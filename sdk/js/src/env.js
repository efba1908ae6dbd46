// Collects the ClientReport the gateway assesses (see PROTOCOL.md). Every
// probe is guarded: a missing API yields a default, never an exception.

export const SDK_VERSION = 'js/0.1.0';

const g = typeof globalThis !== 'undefined' ? globalThis : {};

/**
 * The mini-program API (`wx`) when the SDK runs in a mini-program, else
 * null. Every call of the SDK into `wx` goes through this, so that it is
 * type-checked against miniprogram-api-typings (`tsc --noEmit` in
 * e2e/miniprogram).
 * @returns {WechatMiniprogram.Wx | null}
 */
export function wxApi() {
  const wx = g.wx;
  return typeof wx === 'object' && wx && typeof wx.request === 'function' ? wx : null;
}

/** 'miniprogram' when the wx API is present, else 'browser'. */
export function runtime() {
  return wxApi() ? 'miniprogram' : 'browser';
}

/** Maps a user agent (or a mini-program platform string) to the gateway's platform names. */
export function platformOf(ua, mpPlatform) {
  if (mpPlatform) {
    const p = String(mpPlatform).toLowerCase();
    if (['ios', 'android', 'windows', 'mac', 'devtools', 'ohos', 'linux'].includes(p)) return p;
    if (p === 'harmony' || p === 'harmonyos') return 'ohos';
    if (p === 'macos') return 'mac';
    return 'unknown';
  }
  const u = String(ua || '');
  if (/OpenHarmony|HarmonyOS|ArkWeb/i.test(u)) return 'ohos';
  if (/iPhone|iPad|iPod/i.test(u)) return 'ios';
  if (/Android/i.test(u)) return 'android';
  if (/Windows/i.test(u)) return 'windows';
  if (/Macintosh|Mac OS X/i.test(u)) return /Mobile/.test(u) && hasTouch() ? 'ios' : 'mac';
  if (/Linux|X11|CrOS/i.test(u)) return 'linux';
  return 'unknown';
}

function hasTouch() {
  try { return 'ontouchstart' in g || (g.navigator && g.navigator.maxTouchPoints > 0); } catch { return false; }
}

/** Automation / headless markers visible from page script. */
export function headlessMarkers() {
  const m = [];
  try {
    const nav = g.navigator || {};
    if (/HeadlessChrome/.test(nav.userAgent || '')) m.push('ua_headless');
    if (g._phantom || g.callPhantom) m.push('phantom');
    if (g.__nightmare) m.push('nightmare');
    if (g.domAutomation || g.domAutomationController) m.push('dom_automation');
    const doc = g.document;
    const names = Object.getOwnPropertyNames(g).concat(doc ? Object.getOwnPropertyNames(doc) : []);
    if (names.some((n) => /^(\$?cdc_|\$wdc_|__webdriver|__selenium|__fxdriver|_Selenium_IDE)/.test(n))) m.push('selenium_globals');
    if (nav.plugins && nav.plugins.length === 0 && nav.languages && nav.languages.length === 0) m.push('no_plugins');
    if (g.outerWidth === 0 && g.outerHeight === 0) m.push('zero_outer');
  } catch { /* a hostile page may throw from getters */ }
  return m;
}

/** Interaction counters, fed by listeners (browser) or recordInteraction (mini-program). */
export class InteractionCounter {
  constructor() { this.pointer = 0; this.keys = 0; this.touches = 0; this.scrolls = 0; this._on = false; }
  record(kind) {
    if (kind === 'pointer') this.pointer++;
    else if (kind === 'key') this.keys++;
    else if (kind === 'touch') this.touches++;
    else if (kind === 'scroll') this.scrolls++;
  }
  listen() {
    if (this._on || typeof g.addEventListener !== 'function') return;
    this._on = true;
    const opt = { passive: true, capture: true };
    g.addEventListener('pointerdown', () => this.pointer++, opt);
    g.addEventListener('keydown', () => this.keys++, opt);
    g.addEventListener('touchstart', () => this.touches++, opt);
    g.addEventListener('scroll', () => this.scrolls++, opt);
  }
  toJSON() { return { pointer: this.pointer, keys: this.keys, touches: this.touches, scrolls: this.scrolls }; }
}

/** Builds the report. `timing`: {solve_ms, since_start_ms}. */
export function collectReport(counter, timing) {
  const rt = runtime();
  const report = {
    sdk: SDK_VERSION, runtime: rt, webdriver: false, headless_markers: [], platform: 'unknown',
    user_agent: '', solve_ms: Math.round(timing.solve_ms), since_start_ms: Math.round(timing.since_start_ms),
    interactions: counter.toJSON(), screen: { width: 0, height: 0, dpr: 1, color_depth: 0 },
    languages: [], timezone: '', tz_offset_min: -new Date().getTimezoneOffset(), touch: false,
    max_touch_points: 0, cores: 0,
  };
  try { report.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch { /* old engines */ }
  const wx = wxApi();
  if (rt === 'miniprogram' && wx) {
    try {
      // getSystemInfoSync is deprecated in favour of the three below; old clients lack them.
      const legacy = () => wx.getSystemInfoSync();
      const info = wx.getDeviceInfo ? wx.getDeviceInfo() : legacy();
      const win = wx.getWindowInfo ? wx.getWindowInfo() : legacy();
      const app = wx.getAppBaseInfo ? wx.getAppBaseInfo() : legacy();
      report.platform = platformOf('', info.platform);
      report.user_agent = [info.brand, info.model, info.system].filter(Boolean).join(' ').slice(0, 256);
      report.screen = { width: win.screenWidth | 0, height: win.screenHeight | 0, dpr: +win.pixelRatio || 1, color_depth: 24 };
      if (app.language) report.languages = [app.language];
      report.touch = report.platform !== 'windows' && report.platform !== 'mac';
      report.max_touch_points = report.touch ? 5 : 0;
    } catch { /* keep defaults */ }
    return report;
  }
  const nav = g.navigator || {};
  try {
    report.webdriver = nav.webdriver === true;
    report.headless_markers = headlessMarkers();
    report.user_agent = String(nav.userAgent || '').slice(0, 256);
    report.platform = platformOf(report.user_agent);
    report.languages = Array.from(nav.languages || (nav.language ? [nav.language] : [])).slice(0, 8);
    report.touch = hasTouch();
    report.max_touch_points = Math.min(255, nav.maxTouchPoints | 0);
    report.cores = nav.hardwareConcurrency | 0;
    const s = g.screen || {};
    report.screen = { width: s.width | 0, height: s.height | 0, dpr: +g.devicePixelRatio || 1, color_depth: s.colorDepth | 0 };
  } catch { /* keep defaults */ }
  return report;
}
