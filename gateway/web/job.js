// The job page /jobs/{id}: header and actions, progress, the host grid, the wave
// timeline, and the log with its search, filters and connection indicator (DESIGN §6a).

import { api, mayAct, toLogin } from './api.js';
import { h, when, duration, errorView, announce, TERMINAL, BAD_HOST } from './ui.js';
import { LogModel, LogFilter, LogSearch, LogView } from './log.js';
import { JobStream } from './stream.js';
import { drawTimeline } from './timeline.js';
import { preloadLog } from './preload.js';

const HOST_STATES = ['running', 'ok', 'failed', 'timeout', 'unreachable', 'cancelled', 'skipped', 'pending'];
const PREFS = 'shipwatch.log';

/** The job page of job `id` for `who`; `log` its stored log already loading (preload.js),
 * or null. */
export async function show(main, id, who, log = null) {
  const [job, tasks] = await Promise.all([api(`/api/jobs/${id}`), api('/api/tasks').catch(() => null)]);
  // Cancel and Re-run only for who may start the task (one removed from the config
  // since leaves its jobs to any operator, as the server decides).
  const task = tasks && tasks.tasks.find((t) => t.name === job.task);
  const mayRun = task && typeof task.may_run === 'boolean' ? task.may_run : mayAct(who, 'operator');
  const page = new JobPage(main, job, who, mayRun);
  page.start(log);
}

class JobPage {
  constructor(main, job, who, mayRun) {
    this.main = main;
    this.job = job;
    this.who = who;
    this.mayRun = mayRun;
    this.hosts = new Map();
    for (const hv of job.hosts || []) {
      this.hosts.set(hv.host, {
        host: hv.host, state: hv.state, exit_code: hv.exit_code, wave: hv.wave,
        start: hv.started_at ? Date.parse(hv.started_at) : null,
        end: hv.ended_at ? Date.parse(hv.ended_at) : null,
      });
    }
    this.model = new LogModel();
    for (const name of this.hosts.keys()) this.model.hostId(name);
    this.filter = new LogFilter(this.model);
    this.search = new LogSearch(this.model, this.filter, () => this.searchChanged());
    this.notices = [];
    this.arrived = [];
    this.arrivedSeq = 0;
    this.arrivedTimer = 0;
    this.dirty = false;
    this.failedCursor = -1;
    this.jumpFrom = -1;
    this.build();
  }

  // --- layout --------------------------------------------------------------------------

  build() {
    const job = this.job;
    document.title = `#${job.id} ${job.task} · shipwatch`;
    this.stateEl = h('span', { class: 'state', 'data-job-state': job.state }, job.state);
    this.facts = h('dl', { class: 'facts' });
    this.actions = h('div', { class: 'actions' });
    this.actionError = h('p', { class: 'form-error', role: 'alert' });
    this.progress = h('div', { class: 'progress', role: 'img' });
    this.legend = h('ul', { class: 'legend' });
    this.grid = h('div', { class: 'hosts', role: 'group', 'aria-label': 'Hosts' });
    this.timeline = h('div', { class: 'timeline-box' });
    this.noticeBox = h('ul', { class: 'notices' });

    const prefs = loadPrefs();
    const url = new URL(location.href);
    const hostsWanted = (url.searchParams.get('host') || '').split(',').filter(Boolean);
    const streamWanted = ['stdout', 'stderr'].includes(url.searchParams.get('stream')) ? url.searchParams.get('stream') : null;

    // Log toolbar: search first (it is what people reach for), then view options.
    this.searchBox = h('input', {
      type: 'search', class: 'search', 'aria-label': 'Search log', placeholder: 'Search log', autocomplete: 'off', spellcheck: 'false',
      'aria-keyshortcuts': '/', 'aria-describedby': 'search-status',
    });
    this.caseBtn = h('button', { type: 'button', class: 'toggle', 'aria-pressed': 'false', title: 'Match case', 'aria-label': 'Match case' }, 'Aa');
    this.regexBtn = h('button', { type: 'button', class: 'toggle', 'aria-pressed': 'false', title: 'Regular expression', 'aria-label': 'Regular expression' }, '.*');
    this.prevBtn = h('button', { type: 'button', title: 'Previous match (Shift+Enter)', 'aria-label': 'Previous match' }, '↑');
    this.nextBtn = h('button', { type: 'button', title: 'Next match (Enter)', 'aria-label': 'Next match' }, '↓');
    this.searchStatus = h('span', { class: 'search-status', id: 'search-status', role: 'status', 'aria-label': 'Matches' });
    this.tsSelect = h('select', { id: 'log-ts' },
      h('option', { value: 'off' }, 'off'), h('option', { value: 'abs' }, 'clock'), h('option', { value: 'rel' }, 'since start'));
    this.tsSelect.value = prefs.timestamps || 'off';
    this.wrapBox = h('input', { type: 'checkbox', id: 'log-wrap' });
    this.wrapBox.checked = !!prefs.wrap;
    this.streamSelect = h('select', { id: 'log-stream' },
      h('option', { value: '' }, 'both'), h('option', { value: 'stdout' }, 'stdout'), h('option', { value: 'stderr' }, 'stderr'));
    this.streamSelect.value = streamWanted || '';
    this.conn = h('span', { class: 'conn', role: 'status', 'aria-label': 'Connection', 'data-conn': 'connecting' }, 'connecting');
    this.filterNote = h('p', { class: 'filter-note' });
    this.download = h('span', { class: 'downloads' });
    this.jumpNote = h('span', { class: 'jump-note', role: 'status' });
    this.newLinesBtn = h('button', { type: 'button', class: 'new-lines', hidden: true }, '');
    this.logEl = h('div', { class: 'log', role: 'log', 'aria-label': 'Job log', 'aria-live': 'off', tabindex: '0', 'data-last-seq': '0', 'data-line-count': '0' });

    const toolbar = h('div', { class: 'log-tools', role: 'toolbar', 'aria-label': 'Log tools' },
      h('div', { class: 'search-group' }, this.searchBox, this.caseBtn, this.regexBtn, this.prevBtn, this.nextBtn, this.searchStatus),
      h('div', { class: 'view-group' },
        h('label', { for: 'log-stream' }, 'Stream'), this.streamSelect,
        h('label', { for: 'log-ts' }, 'Time'), this.tsSelect,
        h('label', { class: 'check' }, this.wrapBox, 'Wrap'),
        h('button', { type: 'button', onclick: () => this.nextStderr() }, 'Next stderr'),
        h('button', { type: 'button', onclick: () => this.nextFailedHost() }, 'Next failed host'),
        this.jumpNote,
        this.download));

    this.main.replaceChildren(
      h('article', { class: 'job' },
        h('header', { class: 'job-head' },
          h('div', { class: 'title-row' },
            h('h1', null, h('span', { class: 'id' }, `#${this.job.id}`), ' ', this.job.task),
            this.stateEl, this.conn),
          this.facts, this.actions, this.actionError),
        h('section', { class: 'overview', 'aria-label': 'Overview' },
          h('div', { class: 'hosts-box' },
            h('h2', null, 'Hosts'), this.progress, this.legend, this.grid),
          h('div', { class: 'timeline-wrap' }, h('h2', null, 'Waves'), this.timeline)),
        h('section', { class: 'log-pane', 'aria-label': 'Log' },
          toolbar, this.noticeBox, this.filterNote,
          h('div', { class: 'log-frame' }, this.logEl, this.newLinesBtn))));

    this.view = new LogView(this.logEl, this.model, this.filter, this.search, {
      onFollow: () => this.showNewLines(),
      onRender: () => this.showNewLines(),
      beforeRender: () => this.takeArrived(),
    });
    this.view.configure({ timestamps: this.tsSelect.value, wrap: this.wrapBox.checked, origin: this.origin() });
    this.setFilter(new Set(hostsWanted), streamWanted, false);
    this.wire();
    this.renderHead();
  }

  wire() {
    let typing = 0;
    const rerun = () => this.search.set(this.searchBox.value, {
      caseSensitive: this.caseBtn.getAttribute('aria-pressed') === 'true',
      regex: this.regexBtn.getAttribute('aria-pressed') === 'true',
    });
    this.searchBox.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(rerun, this.model.length > 200_000 ? 250 : 80);
    });
    this.searchBox.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        clearTimeout(typing);
        if (this.search.query !== this.searchBox.value) rerun();
        this.goMatch(ev.shiftKey ? -1 : 1);
      } else if (ev.key === 'Escape') {
        if (this.searchBox.value) {
          ev.preventDefault();
          this.searchBox.value = '';
          rerun();
        } else {
          this.logEl.focus();
        }
      }
    });
    for (const b of [this.caseBtn, this.regexBtn]) {
      b.addEventListener('click', () => {
        b.setAttribute('aria-pressed', String(b.getAttribute('aria-pressed') !== 'true'));
        rerun();
      });
    }
    this.prevBtn.addEventListener('click', () => this.goMatch(-1));
    this.nextBtn.addEventListener('click', () => this.goMatch(1));
    this.tsSelect.addEventListener('change', () => {
      this.view.configure({ timestamps: this.tsSelect.value, origin: this.origin() });
      savePrefs({ timestamps: this.tsSelect.value });
    });
    this.wrapBox.addEventListener('change', () => {
      this.view.configure({ wrap: this.wrapBox.checked });
      savePrefs({ wrap: this.wrapBox.checked });
    });
    this.streamSelect.addEventListener('change', () => this.setFilter(this.filter.hosts || new Set(), this.streamSelect.value || null));
    this.newLinesBtn.addEventListener('click', () => {
      this.view.follow();
      this.logEl.focus();
    });
    this.logEl.addEventListener('keydown', (ev) => {
      if (ev.key === 'End' && !ev.ctrlKey) {
        ev.preventDefault();
        this.view.follow();
      } else if (ev.key === 'Home' && !ev.ctrlKey) {
        ev.preventDefault();
        this.view.reveal(0);
      }
    });
    this.logEl.addEventListener('click', (ev) => {
      const a = ev.target.closest && ev.target.closest('a.ln');
      if (!a) return;
      ev.preventDefault();
      history.replaceState(null, '', a.getAttribute('href'));
      this.goToHash();
    });
    window.addEventListener('hashchange', () => this.goToHash());
    document.addEventListener('keydown', (ev) => {
      const t = ev.target;
      const typingIn = t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA');
      if (ev.key === '/' && !typingIn && !ev.ctrlKey && !ev.metaKey) {
        ev.preventDefault();
        this.searchBox.focus();
        this.searchBox.select();
      }
    });
    new ResizeObserver(() => this.markDirty()).observe(this.timeline);
  }

  // --- events in -------------------------------------------------------------------------

  start(log) {
    const wanted = this.hashSeq();
    if (wanted) this.view.following = false;
    this.stream = new JobStream(this.job.id, {
      lastSeq: () => Math.max(this.model.lastSeq, this.arrivedSeq),
      forceSeq: (seq) => {
        this.takeArrived();
        if (seq > this.model.lastSeq) this.model.lastSeq = seq;
      },
      apply: (events, from, to) => this.arrive(events, from, to),
      status: (s) => this.connection(s),
      ended: () => {
        this.takeArrived();
        return TERMINAL.has(this.job.state);
      },
      resync: () => this.resync(),
      failed: (e) => (e.status === 401 ? toLogin() : errorView(this.main, e)),
    });
    if (wanted) this.goToHash();
    this.load(log || preloadLog(this.job.id));
    this.ticker = setInterval(() => {
      if (!TERMINAL.has(this.job.state)) this.markDirty();
    }, 1000);
  }

  /** What is stored so far comes from the REST log through a worker (fast, off the main
   * thread), then the WebSocket goes on from its last seq. */
  load(log) {
    if (!log) {
      this.stream.start();
      return;
    }
    // The worker's own host numbers, translated as they come.
    const hosts = [];
    // Marks for whoever profiles the page (the browser tests print them).
    let first = true;
    log.take((data) => {
      if (data.type === 'batch') {
        if (first) performance.mark('shipwatch:first-batch');
        first = false;
        for (const name of data.hosts) hosts.push(name);
        this.applyBatch(data, hosts);
      } else {
        performance.mark('shipwatch:log-loaded');
        log.stop();
        this.view.schedule();
        if (data.type === 'error' && data.status === 401) return toLogin();
        this.stream.start();
      }
    });
  }

  applyBatch(b, hosts) {
    const m = this.model;
    if (b.lastSeq <= m.lastSeq) return;
    if (b.seq.length) m.addColumns(b, hosts);
    for (const ev of b.others) this.apply([ev], 0, 1);
    m.lastSeq = b.lastSeq;
    this.afterLines(b.seq.length, true);
  }

  /** Live events wait here for the log's next frame, which applies them all before it
   * draws (or for 100 ms, in a tab that draws no frames): one model update, filter pass
   * and set of hooks per frame, however many WebSocket frames a burst brought. */
  arrive(events, from, to) {
    for (let k = from; k < to; k++) this.arrived.push(events[k]);
    this.arrivedSeq = events[to - 1].seq;
    this.view.schedule();
    if (!this.arrivedTimer) this.arrivedTimer = setTimeout(() => this.takeArrived(), 100);
  }

  /** Applies the live events that arrived since the last frame. */
  takeArrived() {
    clearTimeout(this.arrivedTimer);
    this.arrivedTimer = 0;
    const events = this.arrived;
    if (!events.length) return;
    this.arrived = [];
    this.apply(events, 0, events.length);
  }

  /** The hooks and the view after `lines` new lines; `bulk`: from the stored log's read. */
  afterLines(lines, bulk = false) {
    const m = this.model;
    this.logEl.dataset.lastSeq = String(m.lastSeq);
    this.logEl.dataset.lineCount = String(m.length);
    if (lines) {
      const added = this.filter.extend();
      if (this.search.re) this.search.scan();
      this.view.grew(added, bulk);
      if (this.pendingSeq && m.lastSeq >= this.pendingSeq) this.goToHash();
    }
  }

  apply(events, from, to) {
    const m = this.model;
    let lines = 0;
    for (let k = from; k < to; k++) {
      const ev = events[k];
      if (ev.kind === 'line') {
        m.addLine(ev);
        lines++;
      } else if (ev.kind === 'host') {
        this.hostEvent(ev);
      } else if (ev.kind === 'job') {
        this.jobEvent(ev);
      } else if (ev.kind === 'notice') {
        this.notices.push(ev);
        this.noticeBox.append(h('li', null, ev.text));
      }
      m.lastSeq = ev.seq;
    }
    // The hooks tests wait on move with the data, even in a tab that draws no frames.
    this.afterLines(lines);
  }

  hostEvent(ev) {
    const t = this.model.time(ev.ts);
    let hs = this.hosts.get(ev.host);
    if (!hs) {
      hs = { host: ev.host, state: 'pending', exit_code: null, wave: 0, start: null, end: null };
      this.hosts.set(ev.host, hs);
    }
    const was = hs.state;
    hs.state = ev.state;
    hs.exit_code = ev.exit_code;
    if (ev.state === 'running') hs.start = t;
    else if (ev.state !== 'pending') {
      hs.end = t;
      if (hs.start === null && ev.state !== 'skipped') hs.start = t;
    }
    if (BAD_HOST.has(ev.state) && was !== ev.state && this.live) announce(`${ev.host} ${ev.state}`);
    this.markDirty();
  }

  jobEvent(ev) {
    const t = ev.ts;
    const was = this.job.state;
    this.job.state = ev.state;
    if ('reason' in ev) this.job.reason = ev.reason;
    if (ev.state === 'running' && !this.job.started_at) this.job.started_at = t;
    if (TERMINAL.has(ev.state)) this.job.ended_at = this.job.ended_at || t;
    if (was !== ev.state && this.live) announce(`job ${ev.state}${ev.reason ? `: ${ev.reason}` : ''}`);
    this.markDirty();
  }

  connection(status) {
    this.conn.textContent = status;
    this.conn.dataset.conn = status;
    if (status === 'live') this.live = true;
    if (status === 'ended') {
      if (this.pendingSeq) this.goToHash();
      this.markDirty();
      clearInterval(this.ticker);
    }
  }

  /** Before a reconnect: the job as the API has it now (also proves the gateway is back). */
  async resync() {
    const job = await api(`/api/jobs/${this.job.id}`);
    // Header facts only: states come from the events, in order.
    this.job.params = job.params;
    this.job.started_by = job.started_by;
    this.markDirty();
  }

  // --- header, grid, timeline -------------------------------------------------------------

  markDirty() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => {
      this.dirty = false;
      this.renderHead();
    });
  }

  origin() {
    return this.job.started_at ? Date.parse(this.job.started_at) : Date.parse(this.job.created_at);
  }

  renderHead() {
    const job = this.job;
    this.stateEl.textContent = job.state;
    this.stateEl.dataset.jobState = job.state;
    this.stateEl.className = `state state-${job.state}`;
    document.title = `#${job.id} ${job.task} ${job.state} · shipwatch`;

    const start = job.started_at ? Date.parse(job.started_at) : null;
    const end = job.ended_at ? Date.parse(job.ended_at) : null;
    const params = Object.entries(job.params || {});
    const facts = [
      ['Started by', job.started_by],
      ['Created', when(job.created_at)],
      [end ? 'Took' : 'Running for', start ? duration((end || Date.now()) - start) : 'not started'],
    ];
    if (params.length) facts.unshift(['Params', h('span', { class: 'params' }, params.map(([k, v]) => h('code', null, `${k}=${v}`)))]);
    if (job.reason) facts.push(['Reason', job.reason, 'reason']);
    this.facts.replaceChildren(...facts.map(([k, v, cls]) => h('div', { class: cls }, h('dt', null, k), h('dd', null, v))));

    this.renderActions();
    this.renderHosts();
    drawTimeline(this.timeline, this.job, [...this.hosts.values()], Date.now());
    this.renderDownloads();
  }

  renderActions() {
    const job = this.job;
    const may = this.mayRun;
    const want = [];
    if (may && !TERMINAL.has(job.state)) want.push('Cancel');
    const failed = [...this.hosts.values()].some((x) => BAD_HOST.has(x.state));
    if (may && TERMINAL.has(job.state)) {
      if (failed) want.push('Re-run failed hosts');
      want.push('Re-run all');
    }
    const have = [...this.actions.querySelectorAll('button')].map((b) => b.dataset.action);
    if (have.join('|') === want.join('|')) return;
    const focused = document.activeElement && this.actions.contains(document.activeElement);
    this.actions.replaceChildren(...want.map((name) => h('button', {
      type: 'button',
      'data-action': name,
      class: name === 'Cancel' ? 'danger' : name === 'Re-run failed hosts' ? 'primary' : '',
      onclick: (ev) => this.act(name, ev.currentTarget),
    }, name)));
    if (focused && this.actions.firstChild) this.actions.firstChild.focus();
  }

  async act(name, button) {
    this.actionError.textContent = '';
    button.disabled = true;
    try {
      if (name === 'Cancel') {
        await api(`/api/jobs/${this.job.id}/cancel`, { method: 'POST', body: {} });
        button.setAttribute('aria-describedby', 'cancel-note');
        button.after(h('span', { id: 'cancel-note', class: 'jump-note', role: 'status' }, 'cancelling…'));
      } else {
        const hosts = name === 'Re-run all' ? 'all' : 'failed';
        const job = await api(`/api/jobs/${this.job.id}/rerun`, { method: 'POST', body: { hosts } });
        location.assign(`/jobs/${job.id}`);
      }
    } catch (e) {
      button.disabled = false;
      if (e.status === 401) return toLogin();
      this.actionError.textContent = e.status === 404 && name !== 'Cancel' && !e.field
        ? `${name}: ${e.message}`
        : e.message;
    }
  }

  renderHosts() {
    const hosts = [...this.hosts.values()];
    const counts = Object.fromEntries(HOST_STATES.map((s) => [s, 0]));
    for (const x of hosts) counts[x.state] = (counts[x.state] || 0) + 1;
    const total = hosts.length || 1;
    this.progress.replaceChildren(...HOST_STATES.filter((s) => counts[s]).map((s) => {
      const bar = h('span', { class: `seg host-${s}` });
      bar.style.width = `${(100 * counts[s]) / total}%`;
      return bar;
    }));
    const summary = HOST_STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(', ');
    this.progress.setAttribute('aria-label', `Progress: ${summary}`);
    this.legend.replaceChildren(...HOST_STATES.filter((s) => counts[s]).map((s) =>
      h('li', { class: `host-${s}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), `${counts[s]} ${s}`)));

    const selected = this.filter.hosts;
    if (this.grid.children.length !== hosts.length) {
      const widest = Math.max(4, ...hosts.map((x) => x.host.length));
      this.logEl.style.setProperty('--host-w', `${Math.min(widest, 24)}ch`);
      this.grid.replaceChildren(...hosts.map((x) => {
        const b = h('button', { type: 'button', class: 'host', 'data-host': x.host },
          h('span', { class: 'hn' }, x.host), ' ', h('span', { class: 'hs' }), h('span', { class: 'hx' }));
        b.addEventListener('click', (ev) => this.hostClicked(x.host, ev));
        return b;
      }));
    }
    for (const b of this.grid.children) {
      const x = this.hosts.get(b.dataset.host);
      if (b.dataset.hostState !== x.state) {
        b.dataset.hostState = x.state;
        b.querySelector('.hs').textContent = x.state;
      }
      const code = x.exit_code !== null && x.exit_code !== undefined ? String(x.exit_code) : '';
      const hx = b.querySelector('.hx');
      if (hx.dataset.code !== code) {
        hx.dataset.code = code;
        hx.replaceChildren(...(code ? [h('span', { class: 'xl' }, 'exit '), code] : []));
      }
      b.setAttribute('aria-pressed', String(!!(selected && selected.has(x.host))));
      b.title = hostTitle(x);
    }
  }

  hostClicked(host, ev) {
    let hosts;
    if (ev.shiftKey || ev.ctrlKey || ev.metaKey) {
      hosts = new Set(this.filter.hosts || []);
      if (hosts.has(host)) hosts.delete(host);
      else hosts.add(host);
    } else {
      const only = this.filter.hosts && this.filter.hosts.size === 1 && this.filter.hosts.has(host);
      hosts = only ? new Set() : new Set([host]);
    }
    this.setFilter(hosts, this.filter.stream);
  }

  // --- filters, downloads -----------------------------------------------------------------

  setFilter(hosts, stream, pushUrl = true) {
    this.filter.set(hosts, stream);
    this.streamSelect.value = stream || '';
    if (pushUrl) {
      const url = new URL(location.href);
      if (hosts.size) url.searchParams.set('host', [...hosts].join(','));
      else url.searchParams.delete('host');
      if (stream) url.searchParams.set('stream', stream);
      else url.searchParams.delete('stream');
      history.replaceState(null, '', url);
    }
    const parts = [];
    if (hosts.size) parts.push(`hosts ${[...hosts].join(', ')}`);
    if (stream) parts.push(`${stream} only`);
    this.filterNote.replaceChildren();
    if (parts.length) {
      this.filterNote.append(`Showing ${parts.join(' · ')}. `,
        h('button', { type: 'button', class: 'link', onclick: () => this.setFilter(new Set(), null) }, 'Show everything'));
    }
    this.filterNote.hidden = !parts.length;
    if (this.search.query) this.search.set(this.search.query, { caseSensitive: this.caseBtn.getAttribute('aria-pressed') === 'true', regex: this.regexBtn.getAttribute('aria-pressed') === 'true' });
    this.view.newLines = 0;
    this.view.follow();
    this.view.invalidate();
    this.renderHosts();
    this.renderDownloads();
  }

  renderDownloads() {
    const base = `/api/jobs/${this.job.id}/log`;
    const q = new URLSearchParams();
    const hosts = this.filter.hosts;
    const exact = !hosts || hosts.size === 1;
    if (hosts && hosts.size === 1) q.set('host', [...hosts][0]);
    if (this.filter.stream) q.set('stream', this.filter.stream);
    const filtered = this.filter.active && exact ? q.toString() : '';
    const key = `${filtered}`;
    if (this.download.dataset.key === key && this.download.childElementCount) return;
    this.download.dataset.key = key;
    const ndjson = new URLSearchParams(q);
    ndjson.set('format', 'ndjson');
    this.download.replaceChildren(
      h('a', { href: base, download: `job-${this.job.id}.log` }, 'Raw log'),
      h('a', { href: `${base}?format=ndjson`, download: `job-${this.job.id}.ndjson` }, 'NDJSON'));
    if (filtered) this.download.append(h('a', { href: `${base}?${filtered}`, download: `job-${this.job.id}-filtered.log` }, 'Filtered view'));
  }

  // --- moving around the log --------------------------------------------------------------

  showNewLines() {
    const n = this.view.newLines;
    const show = !this.view.following && n > 0;
    this.newLinesBtn.hidden = !show;
    if (show) this.newLinesBtn.textContent = `↓ ${n.toLocaleString()} new line${n === 1 ? '' : 's'}`;
  }

  async goMatch(dir) {
    const line = await this.search.step(dir, this.view.topPosition());
    if (line < 0) return;
    this.view.target = -1;
    this.view.reveal(this.filter.positionOf(line));
  }

  searchChanged() {
    const s = this.search;
    let text = '';
    if (s.error) text = `bad pattern: ${s.error}`;
    else if (s.query) text = `${s.current + 1} of ${s.count}`;
    this.searchStatus.textContent = text;
    this.searchStatus.classList.toggle('bad', !!s.error);
    this.view.invalidate();
  }

  /** The next stderr line after the one jumped to, or after the top of the view. */
  nextStderr() {
    const f = this.filter;
    const m = this.model;
    const from = this.jumpFrom >= 0 ? this.jumpFrom + 1 : this.view.topPosition();
    for (let k = 0; k < f.length; k++) {
      const pos = (from + k) % f.length;
      if (m.isStderr(f.at(pos))) return this.jumpTo(pos);
    }
    this.flash('No stderr line in view.');
  }

  /** The first stderr line (else the last line) of the next host that failed. */
  nextFailedHost() {
    const bad = [...this.hosts.values()].filter((x) => BAD_HOST.has(x.state)).map((x) => x.host);
    if (!bad.length) return this.flash('No host failed.');
    this.failedCursor = (this.failedCursor + 1) % bad.length;
    const host = bad[this.failedCursor];
    if (this.filter.hosts && !this.filter.hosts.has(host)) this.setFilter(new Set(), null);
    const m = this.model;
    const id = m.hostIds.get(host);
    let first = -1;
    let lastOfHost = -1;
    for (let i = 0; i < m.length; i++) {
      if (m.host.a[i] !== id) continue;
      lastOfHost = i;
      if (m.isStderr(i)) {
        first = i;
        break;
      }
    }
    const line = first >= 0 ? first : lastOfHost;
    if (line < 0) return this.flash(`${host} printed nothing.`);
    this.jumpTo(this.filter.positionOf(line));
  }

  jumpTo(pos) {
    this.jumpFrom = pos;
    this.view.target = this.filter.at(pos);
    this.view.reveal(pos);
  }

  flash(text) {
    this.jumpNote.textContent = text;
    clearTimeout(this.jumpNoteTimer);
    this.jumpNoteTimer = setTimeout(() => { this.jumpNote.textContent = ''; }, 3000);
  }

  hashSeq() {
    const m = location.hash.match(/^#seq=(\d+)$/);
    return m ? Number(m[1]) : 0;
  }

  /** `#seq=N`: scroll to that line and mark it, once it has arrived. */
  goToHash() {
    const seq = this.hashSeq();
    if (!seq) return;
    const m = this.model;
    if (m.lastSeq < seq && this.conn.dataset.conn !== 'ended') {
      this.pendingSeq = seq;
      this.view.following = false;
      return;
    }
    this.pendingSeq = 0;
    const i = m.indexOfSeq(seq);
    if (i >= m.length) return;
    if (this.filter.active && !this.filter.passes(i)) this.setFilter(new Set(), null);
    this.view.target = i;
    this.jumpFrom = this.filter.positionOf(i);
    this.view.reveal(this.jumpFrom);
  }
}

function hostTitle(x) {
  const parts = [`${x.host}: ${x.state}`];
  if (x.exit_code !== null && x.exit_code !== undefined) parts.push(`exit ${x.exit_code}`);
  if (x.start && x.end) parts.push(duration(x.end - x.start));
  parts.push('click: show only its log; shift+click: add to the filter');
  return parts.join(', ');
}

function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS) || '{}');
  } catch {
    return {};
  }
}

function savePrefs(change) {
  try {
    localStorage.setItem(PREFS, JSON.stringify({ ...loadPrefs(), ...change }));
  } catch {
    /* private mode: preferences last for this page only */
  }
}
