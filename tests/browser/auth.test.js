// Who may do what on the page: an anonymous visitor with anonymous = "none" gets the login
// page; a viewer sees no Run or Cancel; an operator runs and cancels; Log out ends it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startShipwatch, launch, newPage, hashPassword } from './lib/harness.js';
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
  await alice.getByRole('region', { name: 'slow' }).getByRole('button', { name: 'Run' }).click();
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
