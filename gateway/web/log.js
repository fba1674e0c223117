// The job log: a column store of every line event (memory grows with the log, not with
// the DOM), a filtered view of it (hosts, stream), a search over the whole view (not just
// what is rendered), and a virtualised renderer that keeps only the rows near the
// viewport in the DOM and touches the DOM at most once per animation frame.

import { segments, plain } from './ansi.js';
import { timeParser } from './ndjson.js';

/** A typed array that grows by doubling. */
class Column {
  constructor(Type, capacity = 4096) {
    this.Type = Type;
    this.a = new Type(capacity);
    this.n = 0;
  }
  push(v) {
    if (this.n === this.a.length) {
      const bigger = new this.Type(this.a.length * 2);
      bigger.set(this.a);
      this.a = bigger;
    }
    this.a[this.n++] = v;
  }
  pushAll(values) {
    const need = this.n + values.length;
    if (need > this.a.length) {
      let cap = this.a.length * 2;
      while (cap < need) cap *= 2;
      const bigger = new this.Type(cap);
      bigger.set(this.a.subarray(0, this.n));
      this.a = bigger;
    }
    this.a.set(values, this.n);
    this.n = need;
  }
}

const STDERR = 1;

/** Live lines are joined into a chunk once this many have come. */
const SEAL_LINES = 4096;

/**
 * Every line event of one job, in seq order, as columns; the text of each run of lines
 * joined into one string (a chunk: `text`, line k at off[k] up to off[k + 1] - 1, and the
 * same as `plain`/`poff` for search when escapes make it differ), so a million lines are
 * a few hundred strings, and a search is one regular expression per chunk. Lines that
 * came live wait in `open` until SEAL_LINES of them are joined.
 */
export class LogModel {
  constructor() {
    this.seq = new Column(Float64Array);
    this.ts = new Column(Float64Array);
    this.host = new Column(Uint16Array);
    this.stream = new Column(Uint8Array);
    this.chunks = [];
    this.open = [];
    this.openStart = 0;
    this.hosts = [];
    this.hostIds = new Map();
    /** Highest seq applied, of any kind of event. */
    this.lastSeq = 0;
    /** Milliseconds of an event's `ts`. */
    this.time = timeParser();
    this.lastChunk = null;
  }

  get length() {
    return this.seq.n;
  }

  hostId(name) {
    let id = this.hostIds.get(name);
    if (id === undefined) {
      id = this.hosts.length;
      this.hosts.push(name);
      this.hostIds.set(name, id);
    }
    return id;
  }

  addLine(ev) {
    this.seq.push(ev.seq);
    this.ts.push(this.time(ev.ts));
    this.host.push(this.hostId(ev.host || ''));
    this.stream.push(ev.stream === 'stderr' ? STDERR : 0);
    this.open.push(ev.text);
    if (this.open.length >= SEAL_LINES) this.seal();
  }

  /** Joins the open lines into a chunk. */
  seal() {
    const lines = this.open;
    const n = lines.length;
    if (!n) return;
    const off = new Uint32Array(n + 1);
    let styled = false;
    for (let k = 0; k < n; k++) {
      const t = lines[k];
      off[k + 1] = off[k] + t.length + 1;
      if (!styled && (t.indexOf('\x1b') >= 0 || t.indexOf('\r') >= 0)) styled = true;
    }
    let plainText = null;
    let poff = null;
    if (styled) {
      const parts = lines.map(plain);
      poff = new Uint32Array(n + 1);
      for (let k = 0; k < n; k++) poff[k + 1] = poff[k] + parts[k].length + 1;
      plainText = `${parts.join('\n')}\n`;
    }
    this.chunks.push({ start: this.openStart, n, text: `${lines.join('\n')}\n`, off, plain: plainText, poff });
    this.open = [];
    this.openStart = this.length;
  }

  /** A batch of lines in columns (ndjson.js); `hosts` maps its host ids to names. */
  addColumns(b, hosts) {
    this.seal();
    const n = b.n;
    const ids = new Uint16Array(hosts.length);
    for (let k = 0; k < hosts.length; k++) ids[k] = this.hostId(hosts[k]);
    const start = this.length;
    this.seq.pushAll(b.seq);
    this.ts.pushAll(b.ts);
    this.stream.pushAll(b.stream);
    const hostIds = b.host;
    for (let k = 0; k < n; k++) hostIds[k] = ids[hostIds[k]];
    this.host.pushAll(hostIds);
    this.chunks.push({ start, n, text: b.text, off: b.off, plain: b.plain, poff: b.poff });
    this.openStart = this.length;
  }

  isStderr(i) {
    return this.stream.a[i] === STDERR;
  }

  hostOf(i) {
    return this.hosts[this.host.a[i]];
  }

  /** The chunk holding line `i` (not an open one). */
  chunkOf(i) {
    const last = this.lastChunk;
    if (last && i >= last.start && i < last.start + last.n) return last;
    const cs = this.chunks;
    let lo = 0;
    let hi = cs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (cs[mid].start <= i) lo = mid;
      else hi = mid - 1;
    }
    this.lastChunk = cs[lo];
    return cs[lo];
  }

  /** Line `i`'s text as it came. */
  textAt(i) {
    if (i >= this.openStart) return this.open[i - this.openStart];
    const c = this.chunkOf(i);
    const k = i - c.start;
    return c.text.slice(c.off[k], c.off[k + 1] - 1);
  }

  /** The index of the line with this seq, or of the first line after it. */
  indexOfSeq(seq) {
    let lo = 0;
    let hi = this.length;
    const a = this.seq.a;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Line `i` as search sees it: its final redraw, without escapes. */
  plainText(i) {
    if (i >= this.openStart) {
      const t = this.open[i - this.openStart];
      return t.indexOf('\x1b') < 0 && t.indexOf('\r') < 0 ? t : plain(t);
    }
    const c = this.chunkOf(i);
    const k = i - c.start;
    return c.plain ? c.plain.slice(c.poff[k], c.poff[k + 1] - 1) : c.text.slice(c.off[k], c.off[k + 1] - 1);
  }
}

/** The lines that pass the host and stream filters, as indexes into the model. */
export class LogFilter {
  constructor(model) {
    this.model = model;
    this.hosts = null; // Set of host names, or null for all
    this.stream = null; // 'stdout' | 'stderr' | null
    this.index = null; // Column of model indexes, or null when nothing is filtered
    this.scanned = 0;
  }

  get active() {
    return this.hosts !== null || this.stream !== null;
  }

  set(hosts, stream) {
    this.hosts = hosts && hosts.size ? new Set(hosts) : null;
    this.stream = stream || null;
    this.index = this.active ? new Column(Int32Array) : null;
    this.scanned = 0;
    this.extend();
  }

  passes(i) {
    const m = this.model;
    if (this.stream !== null && (m.stream.a[i] === STDERR) !== (this.stream === 'stderr')) return false;
    return this.hosts === null || this.hosts.has(m.hostOf(i));
  }

  /** Takes in lines the model gained; returns how many passed. */
  extend() {
    const n = this.model.length;
    const from = this.scanned;
    this.scanned = n;
    if (!this.index) return n - from;
    let added = 0;
    for (let i = from; i < n; i++) {
      if (this.passes(i)) {
        this.index.push(i);
        added++;
      }
    }
    return added;
  }

  get length() {
    return this.index ? this.index.n : this.model.length;
  }

  at(pos) {
    return this.index ? this.index.a[pos] : pos;
  }

  /** The position of model line `i` in the view, or of the first line after it. */
  positionOf(i) {
    if (!this.index) return Math.min(i, this.model.length);
    let lo = 0;
    let hi = this.index.n;
    const a = this.index.a;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] < i) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** A search over every line of the view, kept up to date while lines arrive. */
export class LogSearch {
  constructor(model, filter, onChange) {
    this.model = model;
    this.filter = filter;
    this.onChange = onChange;
    this.query = '';
    this.re = null;
    this.error = null;
    this.matches = new Column(Int32Array);
    this.current = -1;
    this.scannedLine = 0;
    this.version = 0;
    this.running = null;
    this.runningVersion = -1;
  }

  /** Starts a new search; resolves once the whole view has been scanned. */
  set(query, { caseSensitive = false, regex = false } = {}) {
    this.query = query;
    this.error = null;
    this.re = null;
    this.version++;
    this.matches = new Column(Int32Array);
    this.current = -1;
    this.scannedLine = 0;
    if (query !== '') {
      try {
        this.re = new RegExp(regex ? query : query.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), caseSensitive ? 'u' : 'iu');
        this.highlight = new RegExp(this.re.source, `${this.re.flags}g`);
        // One pass over a chunk's joined lines; with `m`, ^ and $ are a line's ends.
        this.chunkRe = new RegExp(this.re.source, `${this.re.flags}gm`);
        // A lookbehind could see the line before; its matches are checked line by line.
        this.verify = regex && /\(\?<[=!]/.test(query);
      } catch (e) {
        this.error = e.message.replace(/^Invalid regular expression: /, '');
      }
    }
    return this.scan();
  }

  /** Scans what is not scanned yet, in slices that never hold the main thread 30 ms. */
  scan() {
    if (!this.re) {
      this.onChange();
      return Promise.resolve();
    }
    if (this.running) {
      if (this.runningVersion === this.version) return this.running;
      return this.running.then(() => this.scan());
    }
    const version = this.version;
    this.runningVersion = version;
    this.running = (async () => {
      const model = this.model;
      while (version === this.version && this.scannedLine < model.length) {
        const deadline = performance.now() + 30;
        while (this.scannedLine < model.length && performance.now() < deadline) this.scanSome(deadline);
        this.onChange();
        if (version === this.version && this.scannedLine < model.length) await yieldToBrowser();
      }
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Scans on from `scannedLine`: the rest of its chunk, or open lines one by one. */
  scanSome(deadline) {
    const m = this.model;
    const from = this.scannedLine;
    const { filter } = this;
    const active = filter.active;
    if (from >= m.openStart) {
      const end = m.length;
      let i = from;
      while (i < end) {
        if ((!active || filter.passes(i)) && this.re.test(m.plainText(i))) this.matches.push(i);
        i++;
        if ((i & 1023) === 0 && performance.now() > deadline) break;
      }
      this.scannedLine = i;
      return;
    }
    const c = m.chunkOf(from);
    const str = c.plain || c.text;
    const off = c.plain ? c.poff : c.off;
    const g = this.chunkRe;
    let k = from - c.start;
    let found = 0;
    g.lastIndex = off[k];
    while (k < c.n) {
      const mt = g.exec(str);
      if (!mt) {
        k = c.n;
        break;
      }
      k = lineAt(off, mt.index, k, c.n);
      if (k >= c.n) break;
      const lineEnd = off[k + 1] - 1;
      const i = c.start + k;
      let ok = mt.index + mt[0].length <= lineEnd && !this.verify;
      if (!ok) ok = this.re.test(str.slice(off[k], lineEnd));
      if (ok && (!active || filter.passes(i))) this.matches.push(i);
      k++;
      if (k < c.n) g.lastIndex = off[k];
      if ((++found & 255) === 0 && performance.now() > deadline) break;
    }
    this.scannedLine = c.start + k;
  }

  get count() {
    return this.matches.n;
  }

  /** Moves to the next (dir 1) or previous (dir -1) match from view position `from`. */
  async step(dir, from) {
    await this.scan();
    const n = this.matches.n;
    if (!n) return -1;
    const a = this.matches.a;
    if (this.current >= 0) {
      this.current = (this.current + dir + n) % n;
    } else {
      const at = this.filter.at(Math.min(from, this.filter.length - 1));
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (a[mid] < at) lo = mid + 1;
        else hi = mid;
      }
      this.current = dir > 0 ? lo % n : (lo - 1 + n) % n;
    }
    this.onChange();
    return a[this.current];
  }

  /** The model index of the current match, or -1. */
  get currentLine() {
    return this.current >= 0 ? this.matches.a[this.current] : -1;
  }
}

/** The line k (from `k` on, below `n`) whose text holds offset `at`; n past the end. */
function lineAt(off, at, k, n) {
  let lo = k;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (off[mid] <= at) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function yieldToBrowser() {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = resolve;
    ch.port2.postMessage(0);
  });
}

// Chrome stops growing an element near 33.5 M px; past this a scroll pixel covers more
// than one row.
const MAX_HEIGHT = 16_000_000;
const OVERSCAN = 12;
/** While a stored log is read in bulk, the view draws at most this often (ms). */
const COARSE_MS = 250;
/** While it follows the end, at most this often (ms), less a little for frame jitter. */
const FOLLOW_MS = 30;

/** Renders a LogFilter's lines into `root` (the scroll container, role=log). */
export class LogView {
  constructor(root, model, filter, search, { onFollow = () => {}, onRender = () => {}, beforeRender = () => {} } = {}) {
    this.root = root;
    this.model = model;
    this.filter = filter;
    this.search = search;
    this.onFollow = onFollow;
    this.onRender = onRender;
    /** Called at the start of each frame the view draws: where what arrived is applied. */
    this.beforeRender = beforeRender;
    this.timestamps = 'off';
    this.wrap = false;
    this.origin = 0;
    this.following = true;
    this.newLines = 0;
    this.target = -1; // model index highlighted by #seq=N or a jump
    this.version = 0;
    this.pending = false;
    this.drawnAt = -Infinity;
    this.coarseTimer = 0;
    this.cache = new Map();
    this.cacheVersion = -1;
    this.range = '';

    this.inner = document.createElement('div');
    this.inner.className = 'log-inner';
    this.rows = document.createElement('div');
    this.rows.className = 'log-rows';
    this.inner.append(this.rows);
    root.append(this.inner);
    this.rowHeight = this.measure();

    root.addEventListener('scroll', () => this.scrolled(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(root);
  }

  measure() {
    const probe = this.row(-1);
    this.rows.append(probe);
    const h = probe.getBoundingClientRect().height || 18;
    probe.remove();
    return h;
  }

  /** Settings that change how every row looks. */
  configure(changes) {
    Object.assign(this, changes);
    this.root.classList.toggle('wrap', this.wrap);
    this.root.classList.toggle('with-ts', this.timestamps !== 'off');
    this.invalidate();
  }

  invalidate() {
    this.version++;
    this.schedule();
  }

  /** New lines reached the filter: count them when not following, then draw; `coarse`
   * (the bulk read of a stored log) draws at most every COARSE_MS, as each draw repaints
   * the page, and nobody reads 65,536 lines a frame. */
  grew(added, coarse = false) {
    if (!this.following) this.newLines += added;
    const since = performance.now() - this.drawnAt;
    if (coarse && since < COARSE_MS) {
      if (!this.coarseTimer) {
        this.coarseTimer = setTimeout(() => {
          this.coarseTimer = 0;
          this.schedule();
        }, COARSE_MS - since);
      }
      return;
    }
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame((t) => this.frame(t));
  }

  /** A frame the view was asked to draw in: it draws, or, following, waits for a later
   * one if it drew less than FOLLOW_MS ago (each draw lays out and repaints the page;
   * thirty a second are plenty for lines that pour in). */
  frame(t) {
    if (this.following && t - this.drawnAt < FOLLOW_MS) {
      requestAnimationFrame((u) => this.frame(u));
      return;
    }
    // Still pending: what this applies schedules no second frame.
    this.beforeRender();
    this.pending = false;
    this.render(t);
  }

  scrolled() {
    const r = this.root;
    const atBottom = r.scrollTop + r.clientHeight >= r.scrollHeight - this.rowHeight / 2;
    if (atBottom !== this.following) {
      this.following = atBottom;
      if (atBottom) this.newLines = 0;
      this.onFollow(atBottom);
    }
    this.schedule();
  }

  follow() {
    this.following = true;
    this.newLines = 0;
    this.onFollow(true);
    this.schedule();
  }

  /** Scrolls view position `pos` to the middle of the viewport. */
  reveal(pos) {
    const n = this.filter.length;
    const r = this.root;
    const visible = r.clientHeight / this.rowHeight;
    const total = n * this.rowHeight;
    let top;
    if (total <= MAX_HEIGHT) top = (pos + 0.5) * this.rowHeight - r.clientHeight / 2;
    else top = ((pos - visible / 2 + 0.5) / Math.max(1, n - visible)) * (MAX_HEIGHT - r.clientHeight);
    this.following = false;
    this.onFollow(false);
    this.inner.style.height = `${Math.min(total, MAX_HEIGHT)}px`;
    r.scrollTop = Math.max(0, top);
    this.render();
  }

  /** The view position of the first row in view. */
  topPosition() {
    return Math.max(0, Math.floor(this.firstFloat || 0));
  }

  render(t = performance.now()) {
    this.drawnAt = t;
    const { root, rowHeight } = this;
    const n = this.filter.length;
    const total = n * rowHeight;
    const height = Math.min(total, MAX_HEIGHT);
    this.inner.style.height = `${height}px`;
    const viewHeight = root.clientHeight;
    if (this.following) root.scrollTop = height;
    const maxScroll = Math.max(0, height - viewHeight);
    const scrollTop = Math.min(root.scrollTop, maxScroll);
    const fit = Math.ceil(viewHeight / rowHeight) + 1;
    const firstFloat = total <= MAX_HEIGHT
      ? scrollTop / rowHeight
      : (maxScroll ? scrollTop / maxScroll : 0) * Math.max(0, n - viewHeight / rowHeight);
    this.firstFloat = firstFloat;

    let first;
    let last;
    const bottomAnchor = this.wrap && scrollTop >= maxScroll - 1 && n > fit;
    if (bottomAnchor) {
      first = Math.max(0, n - fit);
      last = n;
      this.rows.classList.add('at-bottom');
      this.rows.style.transform = '';
    } else {
      const top = Math.floor(firstFloat);
      first = Math.max(0, top - (this.wrap ? 0 : OVERSCAN));
      last = Math.min(n, top + fit + OVERSCAN);
      this.rows.classList.remove('at-bottom');
      const y = total <= MAX_HEIGHT ? first * rowHeight : scrollTop + (first - firstFloat) * rowHeight;
      this.rows.style.transform = `translateY(${y}px)`;
    }

    const key = `${first}:${last}:${this.version}:${this.search.version}:${this.search.current}:${this.target}`;
    if (key !== this.range) {
      this.range = key;
      if (this.cacheVersion !== this.version) {
        this.cache.clear();
        this.cacheVersion = this.version;
      }
      const next = new Map();
      const els = [];
      const current = this.search.currentLine;
      const marking = this.search.re && this.search.highlight;
      for (let pos = first; pos < last; pos++) {
        const i = this.filter.at(pos);
        let el = this.cache.get(i);
        if (!el || el.marked !== (marking ? this.search.version : -1)) el = this.row(i);
        const isCurrent = i === current;
        if (isCurrent) el.setAttribute('aria-current', 'true');
        else el.removeAttribute('aria-current');
        el.classList.toggle('target', i === this.target);
        next.set(i, el);
        els.push(el);
      }
      this.cache = next;
      this.rows.replaceChildren(...els);
    }
    this.root.dataset.lastSeq = String(this.model.lastSeq);
    this.root.dataset.lineCount = String(this.model.length);
    const digits = Math.max(4, String(this.model.lastSeq).length);
    if (digits !== this.digits) {
      this.digits = digits;
      this.root.style.setProperty('--ln-w', `${digits}ch`);
    }
    this.onRender(this);
  }

  /** One line's element; -1 makes a probe row for measuring. */
  row(i) {
    const m = this.model;
    const el = document.createElement('div');
    el.className = 'line';
    const probe = i < 0;
    const seq = probe ? 0 : m.seq.a[i];
    const host = probe ? 'x' : m.hostOf(i);
    const err = !probe && m.isStderr(i);
    if (!probe) {
      el.dataset.seq = String(seq);
      el.dataset.host = host;
      el.dataset.stream = err ? 'stderr' : 'stdout';
      if (err) el.classList.add('err');
    }
    const a = document.createElement('a');
    a.className = 'ln';
    a.href = `#seq=${seq}`;
    a.tabIndex = -1;
    a.textContent = String(seq);
    el.append(a);
    if (this.timestamps !== 'off') {
      const t = document.createElement('span');
      t.className = 'ts';
      t.textContent = probe ? '00:00:00.000' : this.time(m.ts.a[i]);
      el.append(t);
    }
    const hn = document.createElement('span');
    hn.className = 'h';
    hn.textContent = host;
    el.append(hn);
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = err ? 'err' : '';
    if (err) tag.title = 'stderr';
    el.append(tag);
    const text = document.createElement('span');
    text.className = 't';
    el.marked = -1;
    if (!probe) {
      this.fill(text, m.textAt(i));
      if (this.search.re && this.search.highlight) el.marked = this.search.version;
    } else {
      text.textContent = 'x';
    }
    el.append(text);
    return el;
  }

  time(ms) {
    if (this.timestamps === 'rel') {
      const d = (ms - this.origin) / 1000;
      const sign = d < 0 ? '-' : '+';
      const a = Math.abs(d);
      const min = Math.floor(a / 60);
      const sec = (a % 60).toFixed(3).padStart(6, '0');
      return `${sign}${String(min).padStart(2, '0')}:${sec}`;
    }
    const t = new Date(ms);
    const p = (v, w = 2) => String(v).padStart(w, '0');
    return `${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}.${p(t.getMilliseconds(), 3)}`;
  }

  /** The line's ANSI segments as text nodes in spans, with search matches marked. */
  fill(into, raw) {
    const segs = segments(raw);
    const hl = this.search.re ? this.search.highlight : null;
    let ranges = null;
    if (hl) {
      const whole = segs.map((s) => s.text).join('');
      hl.lastIndex = 0;
      ranges = [];
      for (let mt; (mt = hl.exec(whole)); ) {
        if (mt[0] === '') {
          hl.lastIndex++;
          continue;
        }
        ranges.push([mt.index, mt.index + mt[0].length]);
        if (ranges.length > 1000) break;
      }
    }
    let at = 0;
    let r = 0;
    for (const seg of segs) {
      const span = seg.cls || seg.color || seg.background ? document.createElement('span') : null;
      if (span) {
        if (seg.cls) span.className = seg.cls;
        if (seg.color) span.style.color = seg.color;
        if (seg.background) span.style.backgroundColor = seg.background;
      }
      const box = span || into;
      const end = at + seg.text.length;
      let pos = at;
      while (ranges && r < ranges.length && ranges[r][0] < end) {
        const [ms, me] = ranges[r];
        const s0 = Math.max(ms, pos);
        if (s0 > pos) box.append(seg.text.slice(pos - at, s0 - at));
        const e0 = Math.min(me, end);
        const mark = document.createElement('mark');
        mark.textContent = seg.text.slice(s0 - at, e0 - at);
        box.append(mark);
        pos = e0;
        if (me <= end) r++;
        else break;
      }
      if (pos < end) box.append(seg.text.slice(pos - at));
      if (span) into.append(span);
      at = end;
    }
  }
}
