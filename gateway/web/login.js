// The login page: User, Password, Log in (DESIGN §6a); back to where the visitor was.

import { api } from './api.js';
import { h } from './ui.js';

export function show(main, who) {
  document.title = 'Log in · shipwatch';
  const next = safeNext(new URLSearchParams(location.search).get('next'));
  const error = h('p', { class: 'form-error', id: 'login-error', role: 'alert' });
  const user = h('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', { class: 'login', 'aria-labelledby': 'login-title', novalidate: true },
    h('h1', { id: 'login-title' }, 'Log in to shipwatch'),
    who && who.user ? h('p', null, `You are ${who.user} (${who.role}). Log in as someone else:`) : null,
    h('label', { for: 'login-user' }, 'User'), user,
    h('label', { for: 'login-password' }, 'Password'), password,
    error, button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    if (!user.value || !password.value) {
      error.textContent = 'Enter your user name and password.';
      (user.value ? password : user).focus();
      return;
    }
    button.disabled = true;
    try {
      await api('/api/login', { method: 'POST', body: { user: user.value, password: password.value } });
      location.assign(next);
    } catch (e) {
      button.disabled = false;
      if (e.status === 401 || e.status === 400) error.textContent = 'Wrong user name or password.';
      else if (e.status === 429) error.textContent = `Too many attempts; try again in ${e.retryAfter || 'a few'} seconds.`;
      else error.textContent = e.message;
      password.select();
      password.focus();
    }
  });
  main.replaceChildren(form);
  user.focus();
}

/** Only a path on this site, so a crafted link cannot send someone elsewhere. */
function safeNext(next) {
  if (!next) return '/';
  // Resolved the way the browser will resolve it: a prefix check misses '/\t/evil.com',
  // which the URL parser turns into '//evil.com'.
  let url;
  try {
    url = new URL(next, location.origin);
  } catch {
    return '/';
  }
  return url.origin === location.origin ? url.pathname + url.search + url.hash : '/';
}
