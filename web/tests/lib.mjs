// Helpers of the browser tests: the real `rivulet` binary (serve, publish) on free
// loopback ports, and Debian's Chromium driven by playwright-core.

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ADMIN_TOKEN = 'web-test-admin-token-0123456789';

const children = new Set();
const cleanups = [];
function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
  for (const f of cleanups.splice(0)) f();
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

/** The rivulet binary: argv[2], else $RIVULET_BIN, else target/debug/rivulet. */
export function rivuletBinary() {
  return process.argv[2] || process.env.RIVULET_BIN || resolve(here, '../../target/debug/rivulet');
}

/** Where screenshots go: $CARGO_TARGET_DIR/web-artifacts, else target/web-artifacts. */
export function artifactsDir() {
  const base = process.env.CARGO_TARGET_DIR || resolve(here, '../../target');
  const dir = join(base, 'web-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

/**
 * Starts `rivulet serve` on free loopback ports. Resolves to { http, rtmp, rtmpPort, proc, output }.
 */
export function startServer(bin, extra = []) {
  const data = mkdtempSync(join(tmpdir(), 'rivulet-web-'));
  cleanups.push(() => rmSync(data, { recursive: true, force: true }));
  const args = ['serve', '--rtmp-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--data-dir', data, '--admin-token', ADMIN_TOKEN, ...extra];
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RIVULET_LOG: process.env.RIVULET_LOG || 'warn' } });
  children.add(proc);
  const output = [];
  createInterface({ input: proc.stderr }).on('line', (l) => {
    output.push(l);
    if (process.env.RIVULET_TEST_VERBOSE) console.error(`[rivulet] ${l}`);
  });
  return new Promise((resolvePromise, reject) => {
    let http = null;
    let rtmp = null;
    const timer = setTimeout(() => reject(new Error(`rivulet serve printed no addresses in 60 s:\n${output.join('\n')}`)), 60_000);
    proc.on('exit', (code) => reject(new Error(`rivulet serve exited (${code}):\n${output.join('\n')}`)));
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const r = /rtmp:\/\/([^/\s]+)\//.exec(line);
      if (r && !rtmp) rtmp = r[1];
      const h = /HTTP origin: (http:\/\/[^/\s]+)/.exec(line);
      if (h) http = h[1];
      if (http && rtmp) {
        clearTimeout(timer);
        resolvePromise({ http, rtmp: `rtmp://${rtmp}`, rtmpPort: Number(rtmp.split(':').pop()), proc, output });
      }
    });
  });
}

/** Starts `rivulet edge` on a free loopback port in front of `origins`. Resolves to { url, proc }. */
export function startEdge(bin, origins, extra = []) {
  const args = ['edge', '--http-listen', '127.0.0.1:0', ...origins.flatMap((o) => ['--origin', o]), ...extra];
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RIVULET_LOG: process.env.RIVULET_LOG || 'warn' } });
  children.add(proc);
  const output = [];
  createInterface({ input: proc.stderr }).on('line', (l) => output.push(l));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`rivulet edge printed no address in 30 s:\n${output.join('\n')}`)), 30_000);
    proc.on('exit', (code) => reject(new Error(`rivulet edge exited (${code}):\n${output.join('\n')}`)));
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = /HTTP edge: (http:\/\/[^/\s]+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ url: m[1], proc });
      }
    });
  });
}

/** Runs ffmpeg (quiet but for errors) with `args`: an external publisher. Its stderr is
 * kept in `output`; the child is killed at exit. */
export function ffmpeg(args) {
  const proc = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  proc.output = [];
  proc.stderr.on('data', (d) => proc.output.push(String(d)));
  proc.on('exit', () => children.delete(proc));
  return proc;
}

/** Starts `rivulet publish --test-pattern` to `url`; returns the child (killed at exit). */
export function publish(bin, url, { size = '640x360', bitrate = '1M' } = {}) {
  const proc = spawn(bin, ['publish', '--test-pattern', '--size', size, '--bitrate', bitrate, url], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  const output = [];
  createInterface({ input: proc.stderr }).on('line', (l) => output.push(l));
  proc.output = output;
  proc.on('exit', () => children.delete(proc));
  return proc;
}

export function stop(proc) {
  if (proc && proc.exitCode === null) proc.kill('SIGKILL');
  children.delete(proc);
}

/** Headless Chromium (Debian's), with autoplay allowed; `extra`: more flags. */
export async function launchBrowser(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--autoplay-policy=no-user-gesture-required', ...extra],
  });
}

/** A page that records console errors and uncaught exceptions (checked by `assertNoPageErrors`). */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.pageErrors = [];
  page.on('pageerror', (e) => page.pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (process.env.RIVULET_TEST_VERBOSE) console.error(`[page] ${m.type()}: ${m.text()}`);
    // Whatever the pages' Content-Security-Policy blocks is a defect of the pages.
    if (m.type() === 'error' && /Content Security Policy/.test(m.text())) page.pageErrors.push(m.text());
  });
  return page;
}

export function assertNoPageErrors(page) {
  if (page.pageErrors.length) throw new Error(`uncaught errors in the page:\n${page.pageErrors.join('\n')}`);
}

/** Polls `f` (async, node side) until it returns a truthy value; fails after `ms`. */
export async function until(what, f, ms = 60_000, every = 250) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** `page.waitForFunction` with a message that says what was awaited. */
export async function waitInPage(page, what, fn, arg, ms = 60_000) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: ms, polling: 200 });
  } catch (e) {
    const state = await page.evaluate(() => ({
      state: document.body.dataset.state,
      status: document.getElementById('status-text')?.textContent,
      t: document.querySelector('video')?.currentTime,
      // A test's own account of what it waits on, if it keeps one.
      test: window.diagnose?.(),
    })).catch(() => null);
    throw new Error(`timed out after ${ms / 1000} s waiting for ${what}; page: ${JSON.stringify(state)}; ${e.message.split('\n')[0]}`);
  }
}

export async function api(server, method, path, body, token = ADMIN_TOKEN) {
  const r = await fetch(`${server.http}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

/** ffprobe's JSON about `url` (a file or an HLS playlist over HTTP), or throws with its stderr. */
export function ffprobe(args, url) {
  const r = spawnSync('ffprobe', ['-v', 'error', ...args, '-of', 'json', url], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`ffprobe ${url}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export function assert(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}

/** Runs `main`, prints the failure, exits non-zero on failure. */
export async function run(name, main) {
  const started = Date.now();
  try {
    await main();
    log(`${name}: PASS (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    cleanup();
    process.exit(0);
  } catch (e) {
    console.error(`${name}: FAIL: ${e.stack || e}`);
    cleanup();
    process.exit(1);
  }
}
