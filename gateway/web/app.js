// The page's entry: who is here, then the view the URL asks for (/, /jobs/{id}, /audit,
// /login).

import { api, whoAmI } from './api.js';
import { h, errorView } from './ui.js';
import { preloadLog } from './preload.js';

const main = document.getElementById('main');

async function start() {
  const path = location.pathname;
  const job = path.match(/^\/jobs\/(\d+)\/?$/);
  // A job's log is what takes longest: it starts loading before anything else.
  const log = job ? preloadLog(Number(job[1])) : null;
  const who = await whoAmI();
  showWho(who);
  try {
    if (path === '/login') (await import('./login.js')).show(main, who);
    else if (job) await (await import('./job.js')).show(main, Number(job[1]), who, log);
    else if (path === '/audit') await (await import('./audit.js')).show(main, who);
    else await (await import('./dashboard.js')).show(main, who);
  } catch (e) {
    if (log) log.stop();
    if (e && e.status === 401) (await import('./api.js')).toLogin();
    else errorView(main, e);
  }
}

function showWho(who) {
  const nav = document.querySelector('.who');
  nav.replaceChildren();
  const onLogin = location.pathname === '/login';
  if (!who || !who.user) {
    if (!onLogin && who === null) nav.append(h('a', { href: '/login' }, 'Log in'));
    return;
  }
  const anonymous = who.anonymous === true || (who.anonymous === undefined && who.user === 'anonymous');
  if (who.role === 'admin') nav.append(h('a', { href: '/audit' }, 'Audit'));
  nav.append(h('span', { class: 'me' }, anonymous ? 'not logged in' : who.user, who.role ? h('span', { class: 'role' }, who.role) : null));
  if (anonymous) {
    if (!onLogin) nav.append(h('a', { href: `/login?next=${encodeURIComponent(location.pathname + location.search)}` }, 'Log in'));
  } else {
    nav.append(h('button', {
      type: 'button', class: 'quiet',
      onclick: async () => {
        try { await api('/api/logout', { method: 'POST', body: {} }); } catch { /* ended either way */ }
        location.assign('/login');
      },
    }, 'Log out'));
  }
}

start();
