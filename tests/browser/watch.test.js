// Several people watch one rolling deploy: what each browser shows is what the API stored.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startShipwatch, launch, newPage, waitFor, screenshot } from './lib/harness.js';
import { shown, settled } from './lib/page.js';
import { fleet, HOSTS } from './lib/fleet.js';

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

test('two browsers watch a 20-host deploy to the end and show exactly what the API stored', async () => {
  const alice = await newPage(browser);
  const bob = await newPage(browser);
  await Promise.all([alice.goto(`${sw.url}/`), bob.goto(`${sw.url}/`)]);
  const jobs = bob.getByRole('table', { name: 'Jobs' });
  await jobs.waitFor();
  await screenshot(alice, 'dashboard-empty');

  const deploy = alice.getByRole('region', { name: 'deploy' });
  await deploy.getByLabel('REVISION').fill('xyz');
  await waitFor(() => deploy.getByLabel('REVISION').getAttribute('aria-invalid').then((v) => v === 'true'), { what: 'REVISION to be marked invalid as typed' });
  await deploy.getByLabel('REVISION').fill('abc1234');
  await deploy.getByRole('button', { name: 'Run' }).click();
  await alice.waitForURL(/\/jobs\/\d+$/);
  const id = Number(new URL(alice.url()).pathname.split('/').pop());

  // Bob sees the job appear in his live list and follows its link.
  const link = jobs.getByRole('link', { name: `#${id}` });
  await link.waitFor({ timeout: 5000 });
  await link.click();
  await bob.waitForURL(`${sw.url}/jobs/${id}`);
  await bob.getByRole('status', { name: 'Connection' }).filter({ hasText: 'live' }).waitFor({ timeout: 5000 });

  // The screenshot wants waves under way and a stderr line on screen; a loaded box may
  // finish the job first, and then the picture is of the end (the checks below still hold).
  const midDeploy = () => alice.evaluate(() => document.querySelector('[data-job-state]')?.dataset.jobState === 'running' &&
    Number(document.querySelector('[role="log"]').dataset.lineCount) > 30 &&
    !!document.querySelector('[role="log"] [data-stream="stderr"]'));
  const ended = () => alice.evaluate(() => document.querySelector('[data-job-state]')?.dataset.jobState !== 'running' &&
    document.querySelector('[data-job-state]')?.dataset.jobState !== 'queued');
  await waitFor(async () => (await midDeploy()) || (await ended()), { what: 'mid-deploy', timeout: 30000, every: 20 });
  if (!(await midDeploy())) console.log('# the deploy ended before a mid-deploy screenshot; job-mid-deploy.png shows its end');
  await screenshot(alice, 'job-mid-deploy');

  for (const page of [alice, bob]) {
    await page.locator('[data-job-state="succeeded"]').waitFor({ timeout: 30000 });
  }
  const log = await settled(sw, alice, id);
  await settled(sw, bob, id);
  const job = (await sw.api(`/api/jobs/${id}`)).json;
  const want = Object.fromEntries(job.hosts.map((x) => [x.host, x.state]));
  assert.equal(Object.keys(want).length, HOSTS.length);
  for (const page of [alice, bob]) {
    const s = await shown(page);
    assert.deepEqual(s.hosts, want);
    assert.equal(s.state, 'succeeded');
    assert.equal(s.lastSeq, log.lastSeq);
    assert.equal(s.lineCount, log.lines.length);
    await page.getByRole('status', { name: 'Connection' }).filter({ hasText: 'ended' }).waitFor({ timeout: 5000 });
  }
  // The rendered rows carry their hooks, and stderr is marked in text, not only colour.
  const errRow = alice.locator('.line[data-stream="stderr"]').first();
  await alice.getByRole('button', { name: 'Next stderr' }).click();
  await errRow.waitFor();
  assert.match(await errRow.getAttribute('data-host'), /^(web|db)-\d\d$/);
  assert.match(await errRow.textContent(), /err.*warning: config key workers/);
  // The dashboard shows the finished job in the list.
  await alice.goto(`${sw.url}/`);
  await alice.getByRole('table', { name: 'Jobs' }).getByRole('row').filter({ hasText: `#${id}` }).filter({ hasText: 'succeeded' }).waitFor();
  await screenshot(alice, 'dashboard');
  assert.deepEqual([...alice.problems, ...bob.problems], []);
  await alice.context().close();
  await bob.context().close();
});
