// Type definitions for @portcullis/sdk. Wire format: crates/challenge/PROTOCOL.md.

/** Typed error codes of ChallengeResult.err_code. */
export declare const ErrorCode: Readonly<{
  /** Success. */
  OK: 0;
  /** The request failed before any answer (offline, DNS, CORS). */
  NETWORK: 1001;
  /** An unexpected HTTP status or an unreadable challenge token. */
  HTTP: 1002;
  /** The challenge expired before it was verified (retried once automatically). */
  CHALLENGE_EXPIRED: 1003;
  /** The gateway refused the proof of work. */
  BAD_SOLUTION: 1004;
  /** The challenge had already been used (retried once automatically). */
  REPLAYED: 1005;
  /** The gateway refused this client (risk too high, captcha required). */
  REJECTED: 1006;
  /** The whole check took longer than `timeoutMs`. */
  TIMEOUT: 1007;
  /** No transport: neither fetch nor wx.request. */
  UNSUPPORTED: 1008;
  /** The gateway's answer was not the expected JSON. */
  BAD_RESPONSE: 1009;
  /** The challenge belonged to another device id or network (e.g. the network changed mid-check). */
  WRONG_CLIENT: 1010;
  /** Too many attempts; try later. */
  RATE_LIMITED: 1011;
  /** The user closed the captcha. */
  CAPTCHA_CANCELLED: 1012;
  /** The captcha answer was wrong or the drag did not look human. */
  CAPTCHA_FAILED: 1013;
}>;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ChallengeResult {
  /** 0 on success, else one of ErrorCode. */
  err_code: number;
  success: boolean;
  /** The clearance id ('' on failure): quote it to the operator when a user is misjudged. */
  cid: string;
}

export interface Storage {
  get(key: string): string | null;
  set(key: string, value: string): void;
}

export interface TransportResponse {
  status: number;
  header(name: string): string | null;
  text: string;
}

export type Transport = (
  method: string,
  url: string,
  headers: Record<string, string>,
  body: string | null,
) => Promise<TransportResponse>;

export interface ClientOptions {
  /** Gateway origin, e.g. 'https://api.example.com'. '' = the page's origin (browsers). Required in mini-programs. */
  base?: string;
  /** Reserved path prefix (default '/.portcullis'). */
  prefix?: string;
  /** Extra origins whose requests fetch()/wxRequest() sign. */
  origins?: string[];
  /** Budget of one check in ms (default 15000). */
  timeoutMs?: number;
  /**
   * When the gateway requires a captcha (rank 4): true (default) shows the
   * built-in slider in browsers, false reports REJECTED, or a function that
   * shows your own UI and resolves the answer.
   */
  captcha?: boolean | CaptchaHandler;
  /** Labels of the built-in slider. */
  captchaText?: Partial<CaptchaText>;
  /** Also receive the clearance as a cookie, so browser navigations carry it (the gateway's interstitial uses this). */
  cookie?: boolean;
  storage?: Storage;
  transport?: Transport;
}

/** GET /.portcullis/captcha */
export interface CaptchaPuzzle {
  token: string;
  width: number;
  height: number;
  piece: number;
  piece_y: number;
  expires: number;
}

/** The answer: the piece's final x, and the drag trace as [ms, x, y] samples. */
export interface CaptchaAnswer {
  x: number;
  trace: Array<[number, number, number]>;
}

export type CaptchaHandler = (puzzle: CaptchaPuzzle, urls: { bg: string; piece: string }) => Promise<CaptchaAnswer>;

export interface CaptchaText {
  title: string;
  hint: string;
  handle: string;
  cancel: string;
}

/** The built-in slider (browsers): resolves the answer, rejects when cancelled. */
export declare function sliderCaptcha(
  doc: Document,
  puzzle: CaptchaPuzzle,
  urls: { bg: string; piece: string },
  text?: Partial<CaptchaText>,
): Promise<CaptchaAnswer>;

export type Unsubscribe = () => void;

/** The fields the wrapper adds to a signed request. */
export interface SignedHeaders {
  'x-pc-device': string;
  'x-pc-clearance'?: string;
  'content-digest'?: string;
  'signature-input'?: string;
  signature?: string;
}

export declare class PortcullisClient {
  constructor(opts?: ClientOptions);
  /** Starts the silent check once (call in onLaunch / at page load). */
  start(): Promise<void>;
  /** The session clearance; never rejects. Cached on success; a failure runs the check again next time. */
  getClearance(): Promise<ChallengeResult>;
  onChallengeSuccess(cb: (res: ChallengeResult) => void): Unsubscribe;
  onChallengeFail(cb: (res: ChallengeResult) => void): Unsubscribe;
  /** Mini-programs: count an interaction from a page handler. */
  recordInteraction(kind: 'pointer' | 'key' | 'touch' | 'scroll'): void;
  /** Forget the clearance (the next call runs the check again). */
  reset(): void;
  /** The persistent random device id sent as x-pc-device. */
  deviceId(): Promise<string>;
  /** Server clock in unix seconds (offset learnt from the gateway). */
  serverNowSeconds(): number;
  /** The headers for one request (absolute URL, exact body bytes). */
  signedHeaders(method: string, absUrl: string, body: Uint8Array, headers?: Record<string, string>): Promise<SignedHeaders>;
  /** fetch() with clearance and signature for the gateway's origin. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** wx.request() with clearance and signature; resolves with the success result. */
  wxRequest<T = unknown>(options: WxRequestOptions<T>): Promise<WxRequestSuccess<T>>;
}

export interface WxRequestSuccess<T = unknown> {
  data: T;
  statusCode: number;
  header: Record<string, string>;
  [k: string]: unknown;
}

export interface WxRequestOptions<T = unknown> {
  url: string;
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'OPTIONS' | 'TRACE' | 'CONNECT' | 'PATCH' | string;
  data?: string | Record<string, unknown> | ArrayBuffer;
  header?: Record<string, string>;
  timeout?: number;
  dataType?: string;
  responseType?: string;
  success?(res: WxRequestSuccess<T>): void;
  fail?(err: unknown): void;
  complete?(res: unknown): void;
  [k: string]: unknown;
}

/** Configures the default client (before start()). */
export declare function configure(opts: ClientOptions): PortcullisClient;
/** The default client. */
export declare function client(): PortcullisClient;

// The plugin surface, on the default client.
export declare function start(): Promise<void>;
export declare function getClearance(): Promise<ChallengeResult>;
export declare function onChallengeSuccess(cb: (res: ChallengeResult) => void): Unsubscribe;
export declare function onChallengeFail(cb: (res: ChallengeResult) => void): Unsubscribe;
declare function pcFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
export { pcFetch as fetch };
export declare function wxRequest<T = unknown>(options: WxRequestOptions<T>): Promise<WxRequestSuccess<T>>;

/** Registers <gateway-challenge> (done on import in browsers). */
export declare function defineGatewayChallenge(getClient?: () => PortcullisClient, name?: string): boolean;

/** Solves a hashcash challenge in ~12 ms slices. */
export declare function solve(nonce: Uint8Array, difficulty: number, deadline?: number): Promise<number>;

// Pure parts (also usable by other SDKs' tests).
export declare const COMPONENTS: readonly string[];
export interface RequestTarget {
  method: string;
  scheme: string;
  authority: string;
  path: string;
  query: string | null;
}
export declare function contentDigest(body: Uint8Array | string | null | undefined): string;
export declare function serializeParams(p: {
  components?: readonly string[];
  created: number;
  nonce?: string | null;
  keyid: string;
  alg?: string | null;
}): string;
export declare function signatureBase(
  target: RequestTarget,
  header: (name: string) => string | undefined | null,
  components: readonly string[],
  paramsValue: string,
): string;
export declare function splitUrl(url: string, base?: string): Omit<RequestTarget, 'method'>;
export declare function sign(p: {
  key: Uint8Array | CryptoKey;
  keyid: string;
  target: RequestTarget;
  headers: Record<string, string>;
  created: number;
  nonce: string;
  components?: readonly string[];
  label?: string;
}): Promise<{ 'signature-input': string; signature: string }>;
export declare function sha256(data: Uint8Array | string): Uint8Array;
export declare function hmacSha256(key: Uint8Array | string, data: Uint8Array | string): Uint8Array;
export declare function base64(bytes: Uint8Array): string;
export declare function base64url(bytes: Uint8Array): string;
export declare function fromBase64(s: string): Uint8Array;
export declare function hex(bytes: Uint8Array): string;
export declare function utf8(s: string): Uint8Array;
export declare function hashcashSearch(nonce16: Uint8Array, difficulty: number, start: number, count: number): number;
export declare const SDK_VERSION: string;
export declare function platformOf(ua: string, mpPlatform?: string): string;
export declare function headlessMarkers(): string[];
export declare function collectReport(counter: unknown, timing: { solve_ms: number; since_start_ms: number }): Record<string, unknown>;

declare global {
  interface HTMLElementTagNameMap {
    'gateway-challenge': HTMLElement;
  }
  interface HTMLElementEventMap {
    challengesuccess: CustomEvent<ChallengeResult>;
    challengefail: CustomEvent<ChallengeResult>;
  }
}
