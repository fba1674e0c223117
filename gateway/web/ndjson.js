// The one reader of a job's stored events, GET /api/jobs/{id}/log?format=compact&after=N,
// used by the bulk loader (in a worker) and by the gap fill of the live stream.
//
// It reads bytes, not text. The compact format is NDJSON whose line events come as
// `seq TAB ts TAB host TAB o|e TAB text` (ts in ms, or +N/-N from the line before): half
// the bytes of their JSON and nothing to unescape, so a line costs a few digits and two
// native indexOf, its text copied as it is into one buffer per batch. A line event as
// JSON (protocol event.rs's fixed field order, no spaces) is taken apart by position too;
// only a text holding an escape (`\"`, `\u001b`…) and any other event go through
// JSON.parse. A batch hands the page columns (seq, time, host, stream) and its lines'
// text as ONE string with their offsets, so a million lines are a few dozen strings to
// move between threads, to keep, and to search with one regular expression each.

import { plain } from './ansi.js';

const enc = new TextEncoder();
const HEAD = enc.encode('{"kind":"line","job":');
const SEQ = enc.encode(',"seq":');
const TS = enc.encode(',"ts":"');
const HOST = enc.encode('","host":"');
const STREAM = enc.encode('","stream":"');
const TEXT = enc.encode('","text":"');
const QUOTE = 34;
const BACKSLASH = 92;
const NL = 10;
const TAB = 9;
const PLUS = 43;
const MINUS = 45;

/** Lines per batch at most, and how long a batch may wait for more before it goes. */
export const BATCH_LINES = 65536;
const BATCH_MS = 120;

/**
 * Reads the events of job `id` with seq > `after`, in order, handing them to `onBatch`
 * in batches (see Batch) until the log ends or a batch reaches seq `stopAt`. Resolves to
 * the last seq read; rejects with an Error carrying `status` on an HTTP error.
 */
export async function readLog(id, after, onBatch, { stopAt = Infinity, signal } = {}) {
  const ctl = new AbortController();
  if (signal) signal.addEventListener('abort', () => ctl.abort(), { once: true });
  const res = await fetch(`/api/jobs/${id}/log?format=compact&after=${after}`, { credentials: 'same-origin', signal: ctl.signal });
  if (!res.ok) {
    const e = new Error(`log: HTTP ${res.status}`);
    e.status = res.status;
    throw e;
  }
  const reader = res.body.getReader();
  const hosts = new HostTable();
  let batch = new Batch(after, hosts);
  let posted = performance.now();
  let carry = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let buf = value;
      if (carry) {
        buf = new Uint8Array(carry.length + value.length);
        buf.set(carry);
        buf.set(value, carry.length);
      }
      const s = batch.takeAll(buf, stopAt);
      carry = s < buf.length ? buf.slice(s) : null;
      const full = batch.n >= BATCH_LINES || batch.lastSeq >= stopAt;
      if (full || (performance.now() - posted > BATCH_MS && !batch.empty)) {
        onBatch(batch.finish());
        batch = new Batch(batch.lastSeq, hosts, batch);
        posted = performance.now();
      }
      if (batch.lastSeq >= stopAt) return batch.lastSeq;
    }
    if (carry) {
      // A last line without its newline.
      const line = new Uint8Array(carry.length + 1);
      line.set(carry);
      line[carry.length] = NL;
      batch.takeAll(line, stopAt);
    }
    if (!batch.empty) onBatch(batch.finish());
    return batch.lastSeq;
  } finally {
    ctl.abort();
  }
}

/** Host names seen by one read, numbered from 0 in the order they came. */
class HostTable {
  constructor() {
    this.ids = new Map();
    this.lastBytes = new Uint8Array(0);
    this.lastId = -1;
    /** The time of the last compact line, which the next one may be written from. */
    this.lastTs = 0;
  }

  /** The id of the host whose name is b[s, e), and whether it is new. */
  id(b, s, e, batch) {
    const last = this.lastBytes;
    if (e - s === last.length) {
      let same = true;
      for (let k = 0; k < last.length; k++) {
        if (b[s + k] !== last[k]) {
          same = false;
          break;
        }
      }
      if (same) return this.lastId;
    }
    const name = decoder.decode(b.subarray(s, e));
    this.lastBytes = b.slice(s, e);
    this.lastId = this.named(name, batch);
    return this.lastId;
  }

  named(name, batch) {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.ids.size;
      this.ids.set(name, id);
      batch.hosts.push(name);
    }
    return id;
  }
}

const decoder = new TextDecoder();

/**
 * What one batch hands over: `n` lines as columns `seq`, `ts` (ms), `host` (ids of the
 * read's host table; `hosts` names those first seen in this batch, in id order) and
 * `stream` (1 = stderr); their text as one string `text`, line k being
 * text.slice(off[k], off[k + 1] - 1); `plain` and `poff` the same for what search
 * matches, or null when that is the text itself (no line holds an escape or a `\r`);
 * `others` the other events, parsed; `lastSeq` the highest seq in it.
 */
class Batch {
  /** `prev`: the batch before in the same read, whose buffers this one reuses (what a
   * batch hands over is copied out of them). */
  constructor(lastSeq, hosts, prev = null) {
    this.table = hosts;
    this.lastSeq = lastSeq;
    this.n = 0;
    this.seq = prev ? prev.seq : new Float64Array(8192);
    this.ts = prev ? prev.ts : new Float64Array(8192);
    this.host = prev ? prev.host : new Uint16Array(8192);
    this.stream = prev ? prev.stream : new Uint8Array(8192);
    this.bytes = prev ? prev.bytes : new Uint8Array(1 << 20);
    this.boff = prev ? prev.boff : new Uint32Array(8193);
    this.pos = 0;
    this.styled = false;
    this.hosts = [];
    this.others = [];
    this.day = -1;
    this.dayStart = 0;
  }

  get empty() {
    return this.n === 0 && this.others.length === 0;
  }

  /** One NDJSON line, b[s, e). */
  take(b, s, e) {
    if (!this.fast(b, s, e)) this.slow(JSON.parse(decoder.decode(b.subarray(s, e))));
  }

  /** Takes the whole lines of `b` (up to one reaching seq `stopAt`); returns where the
   * first line it did not take starts. */
  takeAll(b, stopAt) {
    let s = 0;
    while (s < b.length && this.lastSeq < stopAt) {
      const c = b[s];
      if (c >= 48 && c <= 57) {
        const next = this.compact(b, s);
        if (next > 0) {
          s = next;
          continue;
        }
      }
      const e = b.indexOf(NL, s);
      if (e < 0) break;
      if (e > s) this.take(b, s, e);
      s = e + 1;
    }
    return s;
  }

  /** A compact line event at b[s] (`seq TAB ts TAB host TAB o|e TAB text`): returns
   * where the next line starts, or 0 when there is none whole here (nothing kept). */
  compact(b, s) {
    let i = s;
    let seq = 0;
    let c = b[i];
    for (; c >= 48 && c <= 57; c = b[++i]) seq = seq * 10 + (c - 48);
    if (c !== TAB) return 0;
    c = b[++i];
    let sign = 0;
    if (c === PLUS || c === MINUS) {
      sign = c === PLUS ? 1 : -1;
      c = b[++i];
    }
    let t = 0;
    for (; c >= 48 && c <= 57; c = b[++i]) t = t * 10 + (c - 48);
    if (c !== TAB) return 0;
    const hs = i + 1;
    const he = b.indexOf(TAB, hs);
    if (he < 0 || b[he + 2] !== TAB) return 0;
    const stderr = b[he + 1] === 101;
    i = he + 3;
    const e = b.indexOf(NL, i);
    if (e < 0) return 0;
    const table = this.table;
    const ms = sign === 0 ? t : table.lastTs + sign * t;
    table.lastTs = ms;
    const k = this.n;
    if (k + 1 >= this.seq.length) this.grow();
    const len = e - i;
    const need = this.pos + len + 1;
    if (need > this.bytes.length) this.growBytes(need);
    const out = this.bytes;
    let p = this.pos;
    if (len > 24) {
      out.set(b.subarray(i, e), p);
      p += len;
    } else {
      for (; i < e; i++) out[p++] = b[i];
    }
    out[p++] = NL;
    this.pos = p;
    this.seq[k] = seq;
    this.ts[k] = ms;
    this.host[k] = table.id(b, hs, he, this);
    this.stream[k] = stderr ? 1 : 0;
    this.n = k + 1;
    this.boff[k + 1] = p;
    this.lastSeq = seq;
    return e + 1;
  }

  /** A line event in the shape the gateway writes, read by position; false otherwise
   * (and nothing kept). */
  fast(b, s, e) {
    if (!at(b, s, HEAD)) return false;
    let i = s + HEAD.length;
    while (b[i] >= 48 && b[i] <= 57) i++;
    if (!at(b, i, SEQ)) return false;
    i += SEQ.length;
    let seq = 0;
    for (let c = b[i]; c >= 48 && c <= 57; c = b[++i]) seq = seq * 10 + (c - 48);
    if (!at(b, i, TS)) return false;
    i += TS.length;
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    if (b[i + 19] !== 46 || b[i + 23] !== 90 || b[i + 24] !== QUOTE) return false;
    const ms = this.time(b, i);
    i += 24;
    if (!at(b, i, HOST)) return false;
    i += HOST.length;
    const hs = i;
    while (i < e && b[i] !== QUOTE && b[i] !== BACKSLASH) i++;
    if (b[i] !== QUOTE) return false;
    const he = i;
    if (!at(b, i, STREAM)) return false;
    i += STREAM.length;
    // "stdout" | "stderr"
    if (b[i + 6] !== QUOTE || b[i] !== 115) return false;
    const stderr = b[i + 3] === 101;
    i += 6;
    if (!at(b, i, TEXT)) return false;
    i += TEXT.length;
    const k = this.n;
    if (k + 1 >= this.seq.length) this.grow();
    const need = this.pos + (e - i) + 1;
    if (need > this.bytes.length) this.growBytes(need);
    const out = this.bytes;
    let p = this.pos;
    for (; i < e; i++) {
      const c = b[i];
      if (c === QUOTE || c === BACKSLASH) break;
      out[p++] = c;
    }
    if (b[i] !== QUOTE || b[i + 1] !== 125 || i + 2 !== e) return false;
    out[p++] = NL;
    this.pos = p;
    this.seq[k] = seq;
    this.ts[k] = ms;
    this.host[k] = this.table.id(b, hs, he, this);
    this.stream[k] = stderr ? 1 : 0;
    this.n = k + 1;
    this.boff[k + 1] = p;
    this.lastSeq = seq;
    return true;
  }

  /** An event JSON.parse read: a line with an escape in its text, or another kind. */
  slow(ev) {
    this.lastSeq = ev.seq;
    if (ev.kind !== 'line') {
      this.others.push(ev);
      return;
    }
    const k = this.n;
    if (k + 1 >= this.seq.length) this.grow();
    const text = ev.text;
    const need = this.pos + text.length * 3 + 1;
    if (need > this.bytes.length) this.growBytes(need);
    const { written } = enc.encodeInto(text, this.bytes.subarray(this.pos));
    this.pos += written;
    this.bytes[this.pos++] = NL;
    if (text.indexOf('\x1b') >= 0 || text.indexOf('\r') >= 0) this.styled = true;
    this.seq[k] = ev.seq;
    this.ts[k] = Date.parse(ev.ts);
    this.host[k] = this.table.named(ev.host || '', this);
    this.stream[k] = ev.stream === 'stderr' ? 1 : 0;
    this.n = k + 1;
    this.boff[k + 1] = this.pos;
  }

  /** Milliseconds of the `YYYY-MM-DDTHH:MM:SS.mmmZ` at b[i]. */
  time(b, i) {
    const d = (k) => b[i + k] - 48;
    const day = ((d(0) * 10 + d(1)) * 100 + d(2) * 10 + d(3)) * 10000 + (d(5) * 10 + d(6)) * 100 + d(8) * 10 + d(9);
    if (day !== this.day) {
      this.day = day;
      this.dayStart = Date.UTC(Math.floor(day / 10000), (Math.floor(day / 100) % 100) - 1, day % 100);
    }
    return this.dayStart + ((d(11) * 10 + d(12)) * 3600 + (d(14) * 10 + d(15)) * 60 + d(17) * 10 + d(18)) * 1000 +
      d(20) * 100 + d(21) * 10 + d(22);
  }

  grow() {
    for (const key of ['seq', 'ts', 'host', 'stream', 'boff']) {
      const bigger = new this[key].constructor(this[key].length * 2);
      bigger.set(this[key]);
      this[key] = bigger;
    }
  }

  growBytes(need) {
    let cap = this.bytes.length * 2;
    while (cap < need) cap *= 2;
    const bigger = new Uint8Array(cap);
    bigger.set(this.bytes.subarray(0, this.pos));
    this.bytes = bigger;
  }

  /** The batch as the page takes it (see the class comment). */
  finish() {
    const n = this.n;
    const bytes = this.bytes.subarray(0, this.pos);
    const text = decoder.decode(bytes);
    const off = new Uint32Array(n + 1);
    // Compact lines carry escapes and carriage returns as they are (JSON ones went the
    // slow way, which noted them).
    const styled = this.styled || text.indexOf('\x1b') >= 0 || text.indexOf('\r') >= 0;
    // The UTF-8 of anything but ASCII is longer than its UTF-16.
    if (text.length === this.pos) {
      off.set(this.boff.subarray(0, n + 1));
    } else {
      // UTF-16 offsets from the UTF-8 bytes: one unit per character, two for one
      // outside the BMP (a 4-byte sequence).
      const b = this.bytes;
      let u = 0;
      for (let k = 0; k < n; k++) {
        for (let i = this.boff[k], end = this.boff[k + 1]; i < end; i++) {
          const c = b[i];
          if ((c & 0xc0) !== 0x80) u += c >= 0xf0 ? 2 : 1;
        }
        off[k + 1] = u;
      }
    }
    let plainText = null;
    let poff = null;
    if (styled) {
      const parts = new Array(n);
      poff = new Uint32Array(n + 1);
      for (let k = 0; k < n; k++) {
        const p = plain(text.slice(off[k], off[k + 1] - 1));
        parts[k] = p;
        poff[k + 1] = poff[k] + p.length + 1;
      }
      plainText = `${parts.join('\n')}\n`;
    }
    return {
      n,
      lastSeq: this.lastSeq,
      seq: this.seq.slice(0, n),
      ts: this.ts.slice(0, n),
      host: this.host.slice(0, n),
      stream: this.stream.slice(0, n),
      hosts: this.hosts,
      text,
      off,
      plain: plainText,
      poff,
      others: this.others,
    };
  }
}

function at(b, i, pat) {
  for (let k = 0; k < pat.length; k++) if (b[i + k] !== pat[k]) return false;
  return true;
}

/** The batch's events in seq order, as the WebSocket would have sent them (the gap
 * fill applies them like live ones). `names` are the read's host names by id. */
export function batchEvents(b, names, job) {
  const out = [];
  let o = 0;
  const others = b.others;
  for (let k = 0; k < b.n; k++) {
    while (o < others.length && others[o].seq < b.seq[k]) out.push(others[o++]);
    out.push({
      kind: 'line', job, seq: b.seq[k], ts: new Date(b.ts[k]).toISOString(), host: names[b.host[k]],
      stream: b.stream[k] ? 'stderr' : 'stdout', text: b.text.slice(b.off[k], b.off[k + 1] - 1),
    });
  }
  while (o < others.length) out.push(others[o++]);
  return out;
}

/** A parser of RFC 3339 `…THH:MM:SS.mmmZ` times to milliseconds that makes no Date per
 * line (it keeps the start of the last day it saw). */
export function timeParser() {
  let day = '\0'; // no day yet: matches no timestamp
  let dayStart = 0;
  return (ts) => {
    if (ts.length === 24 && ts.charCodeAt(19) === 46 && ts.charCodeAt(23) === 90) {
      if (!ts.startsWith(day)) {
        day = ts.slice(0, 11);
        dayStart = Date.parse(`${day}00:00:00.000Z`);
      }
      const d = (k) => ts.charCodeAt(k) - 48;
      return dayStart + ((d(11) * 10 + d(12)) * 3600 + (d(14) * 10 + d(15)) * 60 + d(17) * 10 + d(18)) * 1000 +
        d(20) * 100 + d(21) * 10 + d(22);
    }
    return Date.parse(ts);
  };
}
