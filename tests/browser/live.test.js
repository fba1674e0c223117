// A job page while things happen: cancel from another browser, a reload, a gateway killed
// with SIGKILL mid-job, hostile text, re-running the failed hosts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startShipwatch, launch, newPage, waitFor, apiLog, screenshot } from './lib/harness.js';
import { fleet } from './lib/fleet.js';
import { shown, settled, startJob, ended } from './lib/page.js';

let sw;
let browser;

before(async () => {
  browser = await launch();
  sw = await startShipwatch(fleet());
});

after(async () => {
  await browser?.close();
  await sw?.stop();
});

async function open(id, options) {
  const page = await newPage(browser, options);
  await page.goto(`${sw.url}/jobs/${id}`);
  await page.getByRole('status', { name: 'Connection' }).filter({ hasText: /^live|ended$/ }).waitFor();
  return page;
}

test('Cancel in one browser shows cancelled in both', async () => {
  const id = await startJob(sw, 'slow');
  const [one, two] = await Promise.all([open(id), open(id)]);
  await waitFor(async () => (await shown(two)).lineCount > 20, { what: 'some lines' });
  await one.getByRole('button', { name: 'Cancel', exact: true }).click();
  for (const page of [one, two]) {
    await page.locator('[data-job-state="cancelled"]').waitFor({ timeout: 15000 });
    await page.getByRole('status', { name: 'Connection' }).filter({ hasText: 'ended' }).waitFor();
    // No Cancel on a job that ended.
    assert.equal(await page.getByRole('button', { name: 'Cancel', exact: true }).count(), 0);
  }
  const log = await settled(sw, two, id);
  await settled(sw, one, id);
  const job = (await sw.api(`/api/jobs/${id}`)).json;
  assert.equal(job.state, 'cancelled');
  const want = Object.fromEntries(job.hosts.map((x) => [x.host, x.state]));
  assert.deepEqual((await shown(one)).hosts, want);
  assert.deepEqual((await shown(two)).hosts, want);
  assert.ok(log.lines.length > 20);
  assert.deepEqual([...one.problems, ...two.problems], []);
  await one.context().close();
  await two.context().close();
});

test('a reload mid-job restores the whole log', async () => {
  const id = await startJob(sw, 'slow');
  const page = await open(id);
  await waitFor(async () => (await shown(page)).lineCount > 60, { what: 'lines before the reload' });
  const before = (await shown(page)).lineCount;
  await page.reload();
  await page.getByRole('status', { name: 'Connection' }).filter({ hasText: /^live|ended$/ }).waitFor();
  await waitFor(async () => (await shown(page)).lineCount >= before, { what: 'the log before the reload to be back' });
  await settled(sw, page, id, 30000);
  const log = await apiLog(sw, id);
  assert.equal((await shown(page)).lineCount, log.lines.length);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('gateway killed -9 mid-job: reconnecting, then live, and every line exactly once', async () => {
  const id = await startJob(sw, 'slow');
  const page = await open(id);
  // Every text the indicator shows, however briefly.
  await page.evaluate(() => {
    const el = document.querySelector('[role="status"][aria-label="Connection"]');
    window.connSeen = [el.textContent];
    new MutationObserver(() => window.connSeen.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  });
  await waitFor(async () => (await shown(page)).lineCount > 40, { what: 'lines before the kill' });
  const pid = sw.gatewayPid();
  assert.ok(pid, 'the gateway process');
  process.kill(pid, 'SIGKILL');
  await waitFor(() => page.evaluate(() => window.connSeen.includes('reconnecting')), { what: 'reconnecting', timeout: 5000 });
  await waitFor(() => page.evaluate(() => window.connSeen.lastIndexOf('live') > window.connSeen.indexOf('reconnecting')), { what: 'live again', timeout: 20000 });
  await ended(sw, id);
  const log = await settled(sw, page, id, 30000);
  // The model holds each seq once, in order: count and last seq match the API's, and the
  // rows in view are strictly increasing.
  const s = await shown(page);
  assert.equal(s.lineCount, log.lines.length);
  assert.equal(s.lastSeq, log.lastSeq);
  const seqs = await page.evaluate(() => [...document.querySelectorAll('[role="log"] [data-seq]')].map((r) => Number(r.dataset.seq)));
  for (let k = 1; k < seqs.length; k++) assert.ok(seqs[k] > seqs[k - 1], `rows in seq order: ${seqs[k - 1]} then ${seqs[k]}`);
  const apiSeqs = new Set(log.lines.map((l) => l.seq));
  for (const seq of seqs) assert.ok(apiSeqs.has(seq));
  console.log(`# gateway kill: indicator went ${JSON.stringify(await page.evaluate(() => window.connSeen))}`);
  assert.deepEqual(page.problems.filter((p) => !/WebSocket/.test(p)), []);
  await page.context().close();
});

test('markup and ANSI escapes in a line render as text', async () => {
  const id = await startJob(sw, 'hostile');
  await ended(sw, id);
  const page = await open(id);
  await settled(sw, page, id);
  const rows = page.locator('[role="log"] [data-seq]');
  await waitFor(async () => (await rows.count()) === 4, { what: 'four rows' });
  // stdout and stderr are separate pipes: their relative order is the runner's to pick.
  const out = page.locator('[role="log"] [data-stream="stdout"]');
  const err = page.locator('[role="log"] [data-stream="stderr"]');
  const texts = await out.locator('.t').allTextContents();
  assert.deepEqual(texts, [
    '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">',
    'red <b>not bold</b> plain orange link',
    'progress 100%',
  ]);
  assert.equal(await err.locator('.t').textContent(), '& &amp; &lt;');
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.locator('[role="log"] script, [role="log"] img, [role="log"] b').count(), 0);
  // The colour survives as a class, and the stderr line says so in text.
  assert.equal(await out.nth(1).locator('.fg-1').textContent(), 'red <b>not bold</b>');
  assert.match(await err.textContent(), /err/);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('Re-run failed hosts on a job where 2 of 20 failed starts a job of exactly those 2', async () => {
  const id = await startJob(sw, 'flaky');
  const page = await open(id);
  await page.locator('[data-job-state]').filter({ hasText: /succeeded|failed/ }).waitFor({ timeout: 30000 });
  await settled(sw, page, id);
  const failed = Object.entries((await shown(page)).hosts).filter(([, st]) => st === 'failed').map(([h]) => h).sort();
  assert.deepEqual(failed, ['db-02', 'web-03']);
  await page.getByRole('button', { name: 'Next failed host' }).click();
  await page.locator('[role="log"] .line.target[data-host="web-03"][data-stream="stderr"]').waitFor();
  await screenshot(page, 'job-failed-hosts', { fullPage: true });
  await page.getByRole('button', { name: 'Re-run failed hosts' }).click();
  await page.waitForURL((u) => u.pathname !== `/jobs/${id}`);
  const rerun = Number(new URL(page.url()).pathname.split('/').pop());
  assert.ok(rerun > id);
  const job = await ended(sw, rerun);
  assert.deepEqual(job.hosts.map((x) => x.host).sort(), ['db-02', 'web-03']);
  await settled(sw, page, rerun);
  assert.deepEqual(Object.keys((await shown(page)).hosts).sort(), ['db-02', 'web-03']);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('phone and dark mode screenshots of a finished deploy', async () => {
  const id = await startJob(sw, 'flaky');
  await ended(sw, id);
  const phone = await open(id, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  await settled(sw, phone, id);
  await screenshot(phone, 'job-phone');
  // Nothing wider than the phone but the log itself (which scrolls sideways).
  const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 390, `page is ${wide} px wide on a 390 px phone`);
  await phone.context().close();
  const darkPhone = await open(id, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'dark' });
  await settled(sw, darkPhone, id);
  await darkPhone.getByRole('button', { name: 'Next failed host' }).click();
  await screenshot(darkPhone, 'job-phone-dark', { fullPage: true });
  await darkPhone.context().close();
  const dark = await open(id, { colorScheme: 'dark' });
  await settled(sw, dark, id);
  await dark.getByRole('button', { name: 'Next failed host' }).click();
  await screenshot(dark, 'job-dark');
  await dark.context().close();
});
