// Who may do what on the page: an anonymous visitor with anonymous = "none" gets the login
// page; a viewer sees no Run or Cancel; an operator runs and cancels; Log out ends it; Run
// and Cancel only where the task's allow says so; the 403 view.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startShipwatch, launch, newPage, hashPassword, screenshot } from './lib/harness.js';
import { fleet } from './lib/fleet.js';

let sw;
let browser;

before(async () => {
  const users = `[auth]
anonymous = "none"

[[users]]
name = "alice"
password_hash = "${hashPassword('alice-secret')}"
role = "operator"

[[users]]
name = "vic"
password_hash = "${hashPassword('vic-secret')}"
role = "viewer"

[[users]]
name = "ada"
password_hash = "${hashPassword('ada-secret')}"
role = "admin"

[[tasks]]
name = "guarded"
description = "Only admins may start it"
hosts = ["web-01"]
transport = "local"
allow = ["admin"]
script = "sleep 20"

# Runs until cancelled (slow's 8 s can pass while a loaded box logs two people in).
[[tasks]]
name = "long"
description = "Sleeps until cancelled"
hosts = ["web-01"]
transport = "local"
script = "echo started; sleep 60"
`;
  browser = await launch();
  sw = await startShipwatch(fleet(users));
});

after(async () => {
  await browser?.close();
  await sw?.stop();
});

async function logIn(page, user, password) {
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

test('anonymous gets the login page; a wrong password says so; the right one comes back', async () => {
  const page = await newPage(browser);
  await page.goto(`${sw.url}/`);
  await page.waitForURL(/\/login\?next=/);
  await logIn(page, 'alice', 'wrong');
  await page.getByRole('alert').filter({ hasText: /wrong user name or password/i }).waitFor();
  await logIn(page, 'alice', 'alice-secret');
  await page.waitForURL(`${sw.url}/`);
  await page.getByRole('region', { name: 'deploy' }).getByRole('button', { name: 'Run' }).waitFor();
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/\/login/);
  await page.goto(`${sw.url}/`);
  await page.waitForURL(/\/login\?next=/);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('a viewer sees no Run and no Cancel; the operator who runs a job may cancel it', async () => {
  const alice = await newPage(browser);
  await alice.goto(`${sw.url}/login`);
  await logIn(alice, 'alice', 'alice-secret');
  await alice.waitForURL(`${sw.url}/`);
  await alice.getByRole('region', { name: 'long' }).getByRole('button', { name: 'Run' }).click();
  await alice.waitForURL(/\/jobs\/\d+$/);
  const jobUrl = alice.url();
  await alice.getByRole('button', { name: 'Cancel', exact: true }).waitFor();

  const vic = await newPage(browser);
  await vic.goto(`${sw.url}/login?next=${encodeURIComponent(new URL(jobUrl).pathname)}`);
  await logIn(vic, 'vic', 'vic-secret');
  await vic.waitForURL(jobUrl);
  await vic.getByRole('status', { name: 'Connection' }).filter({ hasText: /live|ended/ }).waitFor();
  assert.equal(await vic.getByRole('button', { name: 'Cancel', exact: true }).count(), 0);
  await vic.goto(`${sw.url}/`);
  await vic.getByRole('region', { name: 'deploy' }).waitFor();
  assert.equal(await vic.getByRole('button', { name: 'Run' }).count(), 0);
  // The server agrees: the viewer's session may not cancel.
  const id = jobUrl.split('/').pop();
  const refused = await vic.request.post(`${sw.url}/api/jobs/${id}/cancel`, { data: {}, headers: { origin: sw.url } });
  assert.equal(refused.status(), 403);

  await alice.getByRole('button', { name: 'Cancel', exact: true }).click();
  await alice.locator('[data-job-state="cancelled"]').waitFor({ timeout: 15000 });
  assert.deepEqual([...alice.problems, ...vic.problems], []);
  await alice.context().close();
  await vic.context().close();
});

test('Run and Cancel only for the roles a task allows; the API says which', async () => {
  const ada = await newPage(browser);
  await ada.goto(`${sw.url}/login`);
  await logIn(ada, 'ada', 'ada-secret');
  await ada.waitForURL(`${sw.url}/`);
  await ada.getByRole('region', { name: 'guarded' }).getByRole('button', { name: 'Run' }).click();
  await ada.waitForURL(/\/jobs\/\d+$/);
  const jobUrl = ada.url();
  await ada.getByRole('button', { name: 'Cancel', exact: true }).waitFor();

  const alice = await newPage(browser);
  await alice.goto(`${sw.url}/login`);
  await logIn(alice, 'alice', 'alice-secret');
  await alice.waitForURL(`${sw.url}/`);
  const tasks = (await (await alice.request.get(`${sw.url}/api/tasks`)).json()).tasks;
  const guarded = tasks.find((t) => t.name === 'guarded');
  assert.deepEqual([guarded.allow, guarded.may_run], [['admin'], false]);
  assert.equal(tasks.find((t) => t.name === 'deploy').may_run, true);
  await alice.getByRole('region', { name: 'deploy' }).getByRole('button', { name: 'Run' }).waitFor();
  assert.equal(await alice.getByRole('region', { name: 'guarded' }).getByRole('button', { name: 'Run' }).count(), 0);
  // Her job page of ada's guarded job: she watches it but is offered no Cancel.
  await alice.goto(jobUrl);
  await alice.getByRole('status', { name: 'Connection' }).filter({ hasText: 'live' }).waitFor();
  await alice.locator('[data-job-state="running"]').waitFor();
  assert.equal(await alice.getByRole('button', { name: 'Cancel', exact: true }).count(), 0);

  await ada.getByRole('button', { name: 'Cancel', exact: true }).click();
  await alice.locator('[data-job-state="cancelled"]').waitFor({ timeout: 15000 });
  assert.deepEqual([...ada.problems, ...alice.problems], []);
  await ada.context().close();
  await alice.context().close();
});

test('a page the role may not see gets the 403 view; an admin sees the audit', async () => {
  const vic = await newPage(browser);
  await vic.goto(`${sw.url}/login?next=${encodeURIComponent('/audit')}`);
  await logIn(vic, 'vic', 'vic-secret');
  await vic.waitForURL(`${sw.url}/audit`);
  const view = vic.getByRole('alert').filter({ has: vic.getByRole('heading', { name: 'Not allowed' }) });
  await view.waitFor();
  assert.match(await view.textContent(), /Your role does not allow this/);
  await view.getByRole('link', { name: 'Log in as someone else' }).waitFor();
  await view.getByRole('link', { name: 'Back to the dashboard' }).waitFor();
  assert.equal(await vic.getByRole('table', { name: 'Audit' }).count(), 0);
  assert.equal(await vic.getByRole('link', { name: 'Audit' }).count(), 0, 'no Audit link for a viewer');
  await screenshot(vic, 'forbidden');

  const ada = await newPage(browser);
  await ada.goto(`${sw.url}/login`);
  await logIn(ada, 'ada', 'ada-secret');
  await ada.waitForURL(`${sw.url}/`);
  await ada.getByRole('link', { name: 'Audit' }).click();
  await ada.waitForURL(`${sw.url}/audit`);
  const table = ada.getByRole('table', { name: 'Audit' });
  await table.getByRole('row').filter({ hasText: 'vic' }).filter({ hasText: 'login' }).first().waitFor();
  assert.deepEqual([...vic.problems, ...ada.problems], []);
  await vic.context().close();
  await ada.context().close();
});
