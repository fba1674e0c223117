// What every browser test needs: the real shipwatch binary on its own port, data dir and
// config; Debian's Chromium through playwright-core; and waits with deadlines.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../../..');
export const ARTIFACTS = path.resolve(here, '../artifacts');
const BIN = process.env.SHIPWATCH_BIN || path.join(ROOT, 'target/release/shipwatch');

/** Resolves once `check()` returns a truthy value (which it resolves to), or throws. */
export async function waitFor(check, { timeout = 15000, every = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

function freePort() {
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
 * Under tests/run.sh ($SHIPWATCH_TEST_LOGS set) the log of every shipwatch the suite ran
 * outlives its temp dir, so the run's last step can check that none holds a secret.
 */
function keepLog(dir) {
  const keep = process.env.SHIPWATCH_TEST_LOGS;
  const log = path.join(dir, 'shipwatch.log');
  if (!keep || !fs.existsSync(log)) return;
  fs.copyFileSync(log, path.join(keep, `browser-${path.basename(dir)}.log`));
}

/** The argon2id hash of a password, as `shipwatch hash-password` prints it. */
export function hashPassword(password) {
  return execFileSync(BIN, ['hash-password'], { input: `${password}\n` }).toString().trim();
}

/**
 * Starts `shipwatch up` with a config of `[server]` made here plus `body` (hosts, tasks,
 * auth, users). Returns {url, dir, stop(), gatewayPid(), api()}.
 */
export async function startShipwatch(body, { runners = 2 } = {}) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shipwatch-browser-'));
  const url = `http://127.0.0.1:${port}`;
  const config = `[server]
listen = "127.0.0.1:${port}"
data_dir = "${dir}/data"
run_dir = "${dir}/run"
public_url = "${url}"

[supervisor]
runners = ${runners}
watch_config = false

${body}`;
  fs.writeFileSync(path.join(dir, 'shipwatch.toml'), config);
  const log = fs.openSync(path.join(dir, 'shipwatch.log'), 'a');
  const child = spawn(BIN, ['up', '-c', path.join(dir, 'shipwatch.toml')], {
    stdio: ['ignore', log, log],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const sw = {
    url,
    dir,
    child,
    async api(p, { method = 'GET', body: b, headers = {} } = {}) {
      const res = await fetch(url + p, {
        method,
        headers: { ...(b !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        body: b !== undefined ? JSON.stringify(b) : undefined,
      });
      const text = await res.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* text */ }
      return { status: res.status, json, text, headers: res.headers };
    },
    /** The gateway child of the supervisor (to kill it). */
    gatewayPid() {
      for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
          const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
          const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
          if (ppid !== child.pid) continue;
          const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          if (cmd.includes('gateway')) return Number(pid);
        } catch { /* gone */ }
      }
      return null;
    },
    logText() {
      return fs.readFileSync(path.join(dir, 'shipwatch.log'), 'utf8');
    },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      await waitFor(() => exited, { timeout: 15000, what: 'shipwatch to stop' }).catch(() => child.kill('SIGKILL'));
      keepLog(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(async () => !exited && (await fetch(`${url}/healthz`)).ok, { timeout: 20000, what: `shipwatch on ${url}` });
    // /metrics may need credentials; the supervisor's log says when runners are in.
    await waitFor(() => (sw.logText().match(/gateway: runner connected/g) || []).length >= runners,
      { timeout: 20000, what: 'runners to connect' });
  } catch (e) {
    const text = fs.existsSync(path.join(dir, 'shipwatch.log')) ? sw.logText() : '';
    child.kill('SIGKILL');
    keepLog(dir);
    throw new Error(`${e.message}\n--- shipwatch log ---\n${text.slice(-4000)}`);
  }
  return sw;
}

/** Debian's Chromium, headless, with nothing that talks to the network on its own. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}

/** A page that fails the test on a console error or a CSP violation. */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  context.setDefaultTimeout(10000);
  // For working on the page without rebuilding the release binary: its assets from disk.
  const webDir = process.env.SHIPWATCH_WEB_DIR;
  if (webDir) {
    await context.route('**/assets/**', (route) => {
      const name = new URL(route.request().url()).pathname.split('/').slice(3).join('/');
      const type = { css: 'text/css', svg: 'image/svg+xml', js: 'text/javascript' }[name.split('.').pop()] || 'text/plain';
      route.fulfill({ body: fs.readFileSync(path.join(webDir, name)), contentType: type });
    });
  }
  const page = await context.newPage();
  page.problems = [];
  // Failed requests show as console errors too; the tests check the answers they expect.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) page.problems.push(m.text());
  });
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  return page;
}

/** The line events of a job as the API's NDJSON log holds them, and its last seq. */
export async function apiLog(sw, id) {
  const res = await sw.api(`/api/jobs/${id}/log?format=ndjson`);
  const events = res.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  return {
    lastSeq: events.length ? events[events.length - 1].seq : 0,
    lines: events.filter((e) => e.kind === 'line'),
    events,
  };
}

export async function screenshot(page, name, options = {}) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, ...options });
  return file;
}
