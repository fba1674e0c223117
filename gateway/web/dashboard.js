// The dashboard: every task with its params and Run, and the jobs list kept live over
// /ws/jobs (DESIGN §6a: a region per task, a table named Jobs).

import { api, mayAct, toLogin, wsUrl } from './api.js';
import { h, when, duration, TERMINAL } from './ui.js';

const PAGE = 25;

export async function show(main, who) {
  document.title = 'shipwatch';
  const [tasks, first] = await Promise.all([api('/api/tasks'), api(`/api/jobs?limit=${PAGE}`)]);
  const canRun = mayAct(who, 'operator');

  const jobs = new Map();
  for (const j of first.jobs) jobs.set(j.id, j);
  let oldest = first.jobs.length === PAGE ? Math.min(...first.jobs.map((j) => j.id)) : null;

  const tbody = h('tbody');
  const older = h('button', { type: 'button', class: 'quiet', onclick: loadOlder }, 'Older jobs');
  const empty = h('p', { class: 'empty' }, canRun ? 'No jobs yet: press Run on a task above.' : 'No jobs yet.');
  const table = h('table', { class: 'jobs', 'aria-label': 'Jobs' },
    h('thead', null, h('tr', null,
      ['Job', 'State', 'Task', 'Params', 'By', 'Started', 'Duration', 'Hosts'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);

  main.replaceChildren(
    h('h1', { class: 'sr-only' }, 'Dashboard'),
    h('section', { class: 'tasks', 'aria-labelledby': 'tasks-title' },
      h('h2', { id: 'tasks-title' }, 'Tasks'),
      h('div', { class: 'task-list' }, tasks.tasks.map((t) => taskCard(t, typeof t.may_run === 'boolean' ? t.may_run : canRun)))),
    h('section', { class: 'jobs-pane', 'aria-labelledby': 'jobs-title' },
      h('h2', { id: 'jobs-title' }, 'Jobs'),
      h('div', { class: 'table-wrap' }, table), empty, older));

  function render() {
    const rows = [...jobs.values()].sort((a, b) => b.id - a.id);
    tbody.replaceChildren(...rows.map(jobRow));
    empty.hidden = rows.length > 0;
    older.hidden = oldest === null;
  }

  async function loadOlder() {
    older.disabled = true;
    try {
      const page = await api(`/api/jobs?limit=${PAGE}&before=${oldest}`);
      for (const j of page.jobs) jobs.set(j.id, j);
      oldest = page.jobs.length === PAGE ? Math.min(...page.jobs.map((j) => j.id)) : null;
      render();
    } finally {
      older.disabled = false;
    }
  }

  render();
  // Running jobs' durations move on their own.
  setInterval(() => {
    for (const cell of tbody.querySelectorAll('td.dur[data-since]')) cell.textContent = duration(Date.now() - Date.parse(cell.dataset.since));
  }, 1000);

  let newest = Math.max(0, ...jobs.keys());
  liveJobs((job) => {
    const known = jobs.has(job.id);
    if (!known && job.id < newest) return; // an old job on a page not loaded
    newest = Math.max(newest, job.id);
    jobs.set(job.id, { ...jobs.get(job.id), ...job });
    render();
  }, async () => {
    // After a reconnect, what changed while away comes from the list itself.
    const page = await api(`/api/jobs?limit=${PAGE}`);
    for (const j of page.jobs) jobs.set(j.id, j);
    render();
  });
}

/** One task's region; Run only when the server says this visitor may start it. */
function taskCard(task, canRun) {
  const id = (p) => `task-${task.name}-${p}`;
  const formError = h('p', { class: 'form-error', role: 'alert' });
  const inputs = task.params.map((p) => paramInput(task, p, id(p.name)));
  const run = canRun ? h('button', { type: 'submit', class: 'primary' }, 'Run') : null;
  const form = h('form', { novalidate: true },
    inputs.map((i) => i.field), formError, run);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formError.textContent = '';
    const bad = inputs.find((i) => !i.check(true));
    if (bad) {
      bad.input.focus();
      return;
    }
    const params = {};
    for (const i of inputs) if (i.input.value !== '') params[i.param.name] = i.input.value;
    run.disabled = true;
    try {
      const job = await api('/api/jobs', { method: 'POST', body: { task: task.name, params } });
      location.assign(`/jobs/${job.id}`);
    } catch (e) {
      run.disabled = false;
      if (e.status === 401) return toLogin();
      const at = e.field && inputs.find((i) => i.param.name === e.field);
      if (at) {
        at.fail(e.message);
        at.input.focus();
      } else {
        formError.textContent = e.status === 409 ? `${e.message}.` : e.message;
      }
    }
  });
  return h('section', { class: 'task', 'aria-label': task.name },
    h('h3', null, task.name),
    task.description ? h('p', { class: 'desc' }, task.description) : null,
    h('p', { class: 'meta' }, `${task.hosts.length} host${task.hosts.length === 1 ? '' : 's'}`),
    form);
}

/** An input labelled by the param's name, checked against its pattern as you type. */
function paramInput(task, param, id) {
  let pattern = null;
  try {
    if (param.pattern) pattern = new RegExp(param.pattern, 'u');
  } catch {
    pattern = null; // a Rust-only construct: the server checks it
  }
  const hint = h('span', { class: 'hint', id: `${id}-hint` },
    param.pattern ? `must match ${param.pattern}` : '', param.required ? ' (required)' : '');
  const msg = h('span', { class: 'field-error', id: `${id}-error` });
  const input = h('input', {
    id, name: param.name, value: param.default || '', required: param.required,
    autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `${id}-hint ${id}-error`,
  });
  function fail(text) {
    msg.textContent = text;
    input.setAttribute('aria-invalid', 'true');
  }
  function check(submitting) {
    const v = input.value;
    msg.textContent = '';
    input.removeAttribute('aria-invalid');
    if (v === '') {
      if (param.required && submitting) {
        fail(`${param.name} is required`);
        return false;
      }
      return true;
    }
    if (pattern && !pattern.test(v)) {
      fail(`${param.name} must match ${param.pattern}`);
      return false;
    }
    return true;
  }
  input.addEventListener('input', () => check(false));
  const field = h('div', { class: 'field' }, h('label', { for: id }, param.name), input, hint, msg);
  return { param, input, field, check, fail };
}

function jobRow(j) {
  const c = j.counts || {};
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  const bad = (c.failed || 0) + (c.timeout || 0) + (c.unreachable || 0);
  const params = Object.entries(j.params || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  const ended = j.ended_at ? Date.parse(j.ended_at) : null;
  const started = j.started_at ? Date.parse(j.started_at) : null;
  const dur = h('td', { class: 'dur', dataset: started && !ended && !TERMINAL.has(j.state) ? { since: j.started_at } : {} },
    started ? duration((ended || Date.now()) - started) : '–');
  return h('tr', { dataset: { job: j.id } },
    h('td', null, h('a', { href: `/jobs/${j.id}` }, `#${j.id}`)),
    h('td', null, h('span', { class: `state state-${j.state}` }, j.state)),
    h('td', null, j.task),
    h('td', { class: 'params' }, params),
    h('td', null, j.started_by),
    h('td', null, when(j.started_at || j.created_at)),
    dur,
    h('td', { class: 'counts' },
      h('span', { class: 'ok', title: 'ok' }, `${c.ok || 0} ok`), ' · ',
      h('span', { class: bad ? 'bad' : '', title: 'failed, timed out or unreachable' }, `${bad} failed`), ' · ',
      `${total}`));
}

/** Calls `onJob` for every job change; on a reconnect, `onResume` first. */
function liveJobs(onJob, onResume) {
  let delay = 250;
  let dropped = false;
  function connect() {
    const ws = new WebSocket(wsUrl('/ws/jobs'));
    ws.onopen = () => {
      delay = 250;
      if (dropped) onResume().catch(() => {});
    };
    ws.onmessage = (m) => {
      let data;
      try {
        data = JSON.parse(m.data);
      } catch {
        return;
      }
      for (const ev of Array.isArray(data) ? data : [data]) if (ev && ev.id) onJob(ev);
    };
    ws.onclose = () => {
      dropped = true;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 5000);
    };
  }
  connect();
}
