// /audit: who started, cancelled, re-ran, logged in or reloaded what, newest first
// (GET /api/audit, admin only: anyone else gets the 403 view).

import { api } from './api.js';
import { h, when } from './ui.js';

const PAGE = 100;

export async function show(main) {
  document.title = 'Audit · shipwatch';
  const first = await api(`/api/audit?limit=${PAGE}`);
  const tbody = h('tbody');
  const older = h('button', { type: 'button', class: 'quiet' }, 'Older entries');
  let oldest = null;
  const add = (page) => {
    for (const e of page.audit) {
      tbody.append(h('tr', null,
        h('td', null, when(e.ts)), h('td', null, e.actor), h('td', null, e.action),
        h('td', null, e.job ? h('a', { href: `/jobs/${e.job}` }, `#${e.job}`) : ''),
        h('td', null, e.detail), h('td', null, e.addr), h('td', { class: e.outcome === 'ok' ? '' : 'bad' }, e.outcome)));
      oldest = e.id;
    }
    older.hidden = page.audit.length < PAGE;
  };
  older.addEventListener('click', async () => {
    older.disabled = true;
    try {
      add(await api(`/api/audit?limit=${PAGE}&before=${oldest}`));
    } finally {
      older.disabled = false;
    }
  });
  main.replaceChildren(
    h('section', { class: 'jobs-pane', 'aria-labelledby': 'audit-title' },
      h('h1', { id: 'audit-title' }, 'Audit'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'jobs', 'aria-label': 'Audit' },
          h('thead', null, h('tr', null,
            ['When', 'Who', 'What', 'Job', 'Detail', 'From', 'Outcome'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody)),
      older));
  add(first);
}
