// A job page while things happen: cancel from another browser, a reload, a gateway killed
// with SIGKILL mid-job, hostile text and colours, re-running the failed hosts, line
// permalinks and filters kept in the URL.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startShipwatch, launch, newPage, waitFor, apiLog, screenshot } from './lib/harness.js';
import { fleet } from './lib/fleet.js';
import { shown, settled, startJob, ended, everyRow } from './lib/page.js';

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

test('lost WebSocket frames, a repeated one and a dropped connection mid-job: the gap is refetched by seq, every line shows once, in order', async () => {
  const id = await startJob(sw, 'slow');
  const page = await newPage(browser);
  // Between the page and the gateway: frames 4 and 5 are lost, frame 7 comes twice, and
  // after frame 10 the connection drops (the page sees code 4000, the gateway a close).
  const conns = [];
  let frames = 0;
  const lost = [];
  await page.routeWebSocket(/\/ws\/jobs\/\d+/, (ws) => {
    conns.push(new URL(ws.url()).searchParams.get('after'));
    const server = ws.connectToServer();
    server.onMessage((msg) => {
      frames++;
      const seqs = JSON.parse(msg).map((e) => e.seq);
      if (frames === 4 || frames === 5) {
        lost.push(...seqs);
        return;
      }
      ws.send(msg);
      if (frames === 7) ws.send(msg);
      if (frames === 10) {
        ws.close({ code: 4000, reason: 'test drops the connection' });
        server.close();
      }
    });
  });
  const fills = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === `/api/jobs/${id}/log`) fills.push(Number(u.searchParams.get('after') || 0));
  });
  await page.goto(`${sw.url}/jobs/${id}`);
  await page.getByRole('status', { name: 'Connection' }).filter({ hasText: /^live|ended$/ }).waitFor();
  await waitFor(() => conns.length >= 2, { what: 'the page to reconnect after the dropped connection', timeout: 30000 });
  await ended(sw, id);
  const log = await settled(sw, page, id, 30000);
  await page.getByRole('status', { name: 'Connection' }).filter({ hasText: 'ended' }).waitFor();

  assert.ok(lost.length > 0, 'a frame was lost');
  // The gap was fetched from the REST log from the seq before the lost frame, and the
  // reconnect resumed after the last seq the page held, not from the start.
  assert.ok(fills.includes(lost[0] - 1), `a log read after=${lost[0] - 1} (reads: ${JSON.stringify(fills)})`);
  assert.ok(Number(conns[1]) > lost[lost.length - 1], `reconnected with after=${conns[1]}, past the lost frame`);
  const rows = await everyRow(page);
  const s = await shown(page);
  assert.equal(s.lineCount, log.lines.length);
  assert.equal(s.lastSeq, log.lastSeq);
  assert.deepEqual(rows.map((r) => r.seq), log.lines.map((l) => l.seq));
  assert.deepEqual(rows.map((r) => `${r.host} ${r.stream} ${r.text}`), log.lines.map((l) => `${l.host} ${l.stream} ${l.text}`));
  console.log(`# gap: frames 4 and 5 lost (seqs ${lost[0]}–${lost[lost.length - 1]}), log reads after=${JSON.stringify(fills)}, connections after=${JSON.stringify(conns)}`);
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
    'red <b>not bold</b> plain orange blue on green link',
    'progress 100%',
  ]);
  assert.equal(await err.locator('.t').textContent(), '& &amp; &lt;');
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.locator('[role="log"] script, [role="log"] img, [role="log"] b').count(), 0);
  // The colour survives as a class, and the stderr line says so in text.
  assert.equal(await out.nth(1).locator('.fg-1').textContent(), 'red <b>not bold</b>');
  // 256 colours and true colour as CSS colours (38;5;208 is xterm's orange, 48;5;22 a
  // dark green), set through the CSSOM: the CSP allows no style attribute in markup.
  const colours = await out.nth(1).locator('.t span').evaluateAll((spans) => spans.map((el) => ({
    text: el.textContent, color: getComputedStyle(el).color, background: getComputedStyle(el).backgroundColor,
  })));
  const seg = (text) => colours.find((c) => c.text === text);
  assert.equal(seg('orange')?.color, 'rgb(255, 135, 0)', JSON.stringify(colours));
  assert.equal(seg('blue on green')?.color, 'rgb(0, 128, 255)', JSON.stringify(colours));
  assert.equal(seg('blue on green')?.background, 'rgb(0, 95, 0)', JSON.stringify(colours));
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

/** Whether the log row with `seq` is wholly inside the log's box. */
function rowInView(page, seq) {
  return page.evaluate((n) => {
    const log = document.querySelector('[role="log"]');
    const row = log.querySelector(`[data-seq="${n}"]`);
    if (!row) return false;
    const r = row.getBoundingClientRect();
    const box = log.getBoundingClientRect();
    return r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
  }, seq);
}

test('#seq=N scrolls to that line and marks it; a line number is its permalink', async () => {
  const id = await startJob(sw, 'slow');
  await ended(sw, id, 60000);
  const { lines } = await apiLog(sw, id);
  const early = lines[20].seq;
  const page = await newPage(browser);
  await page.goto(`${sw.url}/jobs/${id}#seq=${early}`);
  await settled(sw, page, id);
  await waitFor(() => rowInView(page, early), { what: `line ${early} in view` });
  const target = page.locator(`[role="log"] [data-seq="${early}"]`);
  assert.match(await target.getAttribute('class'), /(^| )target( |$)/);
  // The end of the log is far below: opening the link did not follow the tail.
  assert.equal(await rowInView(page, lines[lines.length - 1].seq), false);
  assert.equal(await page.locator('[role="log"] .line.target').count(), 1);

  // Clicking another line's number makes that the permalink and marks it instead.
  const next = lines[24].seq;
  await page.locator(`[role="log"] [data-seq="${next}"] a.ln`).click();
  await waitFor(() => page.evaluate(() => location.hash), { what: 'hash' });
  assert.equal(new URL(page.url()).hash, `#seq=${next}`);
  await page.locator(`[role="log"] .line.target[data-seq="${next}"]`).waitFor();
  assert.equal(await page.locator('[role="log"] .line.target').count(), 1);

  // Shared: a fresh browser opening the link lands on the same line.
  const other = await newPage(browser);
  await other.goto(page.url());
  await other.locator(`[role="log"] .line.target[data-seq="${next}"]`).waitFor();
  await waitFor(() => rowInView(other, next), { what: `line ${next} in view` });
  assert.deepEqual([...page.problems, ...other.problems], []);
  await page.context().close();
  await other.context().close();
});

test('host and stream filters live in the URL and survive a reload', async () => {
  const id = await startJob(sw, 'flaky');
  await ended(sw, id);
  const page = await open(id);
  await settled(sw, page, id);
  const hosts = page.getByRole('group', { name: 'Hosts' });
  await hosts.getByRole('button', { name: /^web-03/ }).click();
  await page.getByLabel('Stream').selectOption('stderr');
  await waitFor(() => {
    const q = new URL(page.url()).searchParams;
    return q.get('host') === 'web-03' && q.get('stream') === 'stderr';
  }, { what: 'the filters in the URL' });
  const rowsNow = async () => page.$$eval('[role="log"] [data-seq]', (rows) => rows.map((r) => `${r.dataset.host} ${r.dataset.stream} ${r.querySelector('.t').textContent}`));
  const want = ['web-03 stderr error: disk full on web-03'];
  await waitFor(async () => JSON.stringify(await rowsNow()) === JSON.stringify(want), { what: 'only web-03 stderr' });

  await page.reload();
  await settled(sw, page, id);
  await waitFor(async () => JSON.stringify(await rowsNow()) === JSON.stringify(want), { what: 'the filters after a reload' });
  assert.equal(await page.getByLabel('Stream').inputValue(), 'stderr');
  assert.equal(await hosts.getByRole('button', { name: /^web-03/ }).getAttribute('aria-pressed'), 'true');
  assert.equal(await hosts.getByRole('button', { name: /^db-02/ }).getAttribute('aria-pressed'), 'false');

  // Shift+click adds a host; that survives a reload too.
  await hosts.getByRole('button', { name: /^db-02/ }).click({ modifiers: ['Shift'] });
  await waitFor(() => new URL(page.url()).searchParams.get('host') === 'web-03,db-02', { what: 'two hosts in the URL' });
  await page.reload();
  await settled(sw, page, id);
  const both = ['web-03 stderr error: disk full on web-03', 'db-02 stderr error: disk full on db-02'];
  await waitFor(async () => JSON.stringify((await rowsNow()).sort()) === JSON.stringify([...both].sort()), { what: 'both hosts after a reload' });
  // And "Show everything" drops both from the URL.
  await page.getByRole('button', { name: 'Show everything' }).click();
  await waitFor(() => !new URL(page.url()).search, { what: 'a URL without filters' });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
