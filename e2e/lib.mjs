// Shared helpers of the end-to-end tests: a free port, an origin that echoes
// what the gateway told it, the gateway binary with a config, and Debian's
// headless Chromium driven by playwright-core.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The gateway binary: PORTCULLIS_BIN, or the debug build. */
export const BIN = process.env.PORTCULLIS_BIN || path.join(root, 'target/debug/portcullis');

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * An origin on 127.0.0.1: serves `pages` (path -> HTML) and answers every
 * other request with JSON echoing the risk headers it received. `requests`
 * records each request (method, url, headers, body).
 */
export async function startOrigin(pages = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const page = pages[req.url.split('?')[0]];
      if (page) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(page);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        ok: true,
        path: req.url,
        rank: req.headers['x-wx-risk-rank'] ?? null,
        device_rank: req.headers['x-wx-device-risk-rank'] ?? null,
        cid: req.headers['x-wx-sub-session'] ?? null,
        body,
      }));
    });
  });
  const port = await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
  return { port, url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => server.close(r)) };
}

/**
 * Starts `portcullis run` with `config` (TOML) in front of `originUrl`;
 * resolves once the data listener answers. `env` adds environment variables.
 */
export async function startGateway(config, originUrl, env = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'portcullis-e2e-'));
  const file = path.join(dir, 'portcullis.toml');
  writeFileSync(file, config);
  const port = await freePort();
  const admin = await freePort();
  const child = spawn(BIN, [
    'run', '--config', file,
    '--listen', `127.0.0.1:${port}`,
    '--admin', `127.0.0.1:${admin}`,
    '--upstream', originUrl,
  ], { cwd: dir, env: { ...process.env, RUST_LOG: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const events = [];
  let pending = '';
  child.stdout.on('data', (chunk) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) {
      try { events.push(JSON.parse(line)); } catch { /* not an event */ }
    }
  });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr += c.toString('utf8'); });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited: ${stderr}`);
    try {
      await fetch(`http://127.0.0.1:${admin}/healthz`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`gateway did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    port,
    admin: `http://127.0.0.1:${admin}`,
    dir,
    file,
    events,
    // Stops the gateway and removes its directory (config, event store, console database).
    stop: () => new Promise((resolve) => {
      const done = () => { rmSync(dir, { recursive: true, force: true }); resolve(); };
      if (child.exitCode !== null) return done();
      child.once('exit', done);
      child.kill('SIGTERM');
    }),
  };
}

/** Debian's Chromium, headless, with the flags this machine needs. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** A desktop Chrome user agent (headless Chromium announces itself otherwise). */
export const DESKTOP_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
