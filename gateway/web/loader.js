// A module worker that reads every event a job has stored so far from
// GET /api/jobs/{id}/log?format=ndjson and hands them to the page in columns, so parsing
// a million lines happens beside the page, not on its main thread. The page then goes
// live over the WebSocket with after= the last seq this delivered.

const BATCH_LINES = 50000;
const BATCH_MS = 150;

self.onmessage = async ({ data }) => {
  try {
    await load(data.id);
  } catch (e) {
    self.postMessage({ type: 'error', message: String(e && e.message ? e.message : e) });
  }
};

async function load(id) {
  const res = await fetch(`/api/jobs/${id}/log?format=ndjson`, { credentials: 'same-origin' });
  if (!res.ok) {
    self.postMessage({ type: 'error', status: res.status });
    return;
  }
  const hostIds = new Map();
  let batch = newBatch();
  let lastPost = performance.now();
  let day = '\0';
  let dayStart = 0;
  const time = (ts) => {
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
  const post = () => {
    const b = batch;
    const n = b.n;
    const msg = {
      type: 'batch', lastSeq: b.lastSeq, hosts: b.hosts, others: b.others, text: b.text,
      seq: b.seq.slice(0, n), ts: b.ts.slice(0, n), host: b.host.slice(0, n), stream: b.stream.slice(0, n),
    };
    self.postMessage(msg, [msg.seq.buffer, msg.ts.buffer, msg.host.buffer, msg.stream.buffer]);
    batch = newBatch();
    batch.lastSeq = b.lastSeq;
    lastPost = performance.now();
  };

  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const chunk = rest + value;
    let start = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', start)) {
      if (nl > start) {
        const ev = lineEvent(chunk, start, nl) || JSON.parse(chunk.slice(start, nl));
        if (ev.kind === 'line') {
          let h = hostIds.get(ev.host);
          if (h === undefined) {
            h = hostIds.size;
            hostIds.set(ev.host, h);
            batch.hosts.push(ev.host);
          }
          const k = batch.n++;
          if (k === batch.seq.length) grow(batch);
          batch.seq[k] = ev.seq;
          batch.ts[k] = time(ev.ts);
          batch.host[k] = h;
          batch.stream[k] = ev.stream === 'stderr' ? 1 : 0;
          batch.text.push(ev.text);
        } else {
          batch.others.push(ev);
        }
        batch.lastSeq = ev.seq;
      }
      start = nl + 1;
    }
    rest = chunk.slice(start);
    if (batch.n >= BATCH_LINES || (performance.now() - lastPost > BATCH_MS && (batch.n || batch.others.length))) post();
  }
  if (batch.n || batch.others.length) post();
  self.postMessage({ type: 'done', lastSeq: batch.lastSeq });
}

// A line event as the gateway writes it, fields in this order, no spaces (protocol
// event.rs serialises by hand). Reading it by position is several times faster than
// JSON.parse; anything else (or a surprise) goes to JSON.parse.
const HEAD = '{"kind":"line","job":';
const SEQ = ',"seq":';
const TS = ',"ts":"';
const HOST = '","host":"';
const STREAM = '","stream":"';
const TEXT = '","text":"';

function lineEvent(s, start, end) {
  if (!s.startsWith(HEAD, start)) return null;
  let i = s.indexOf(SEQ, start + HEAD.length);
  if (i < 0 || i > end) return null;
  i += SEQ.length;
  let seq = 0;
  for (let c = s.charCodeAt(i); c >= 48 && c <= 57; c = s.charCodeAt(++i)) seq = seq * 10 + (c - 48);
  if (!s.startsWith(TS, i)) return null;
  i += TS.length;
  const tsEnd = s.indexOf('"', i);
  const ts = s.slice(i, tsEnd);
  if (!s.startsWith(HOST, tsEnd)) return null;
  i = tsEnd + HOST.length;
  const hostEnd = s.indexOf('"', i);
  const host = s.slice(i, hostEnd);
  if (host.indexOf('\\') >= 0 || !s.startsWith(STREAM, hostEnd)) return null;
  i = hostEnd + STREAM.length;
  const streamEnd = s.indexOf('"', i);
  const stream = s.slice(i, streamEnd);
  if (!s.startsWith(TEXT, streamEnd)) return null;
  i = streamEnd + TEXT.length;
  if (s.charCodeAt(end - 1) !== 125 || s.charCodeAt(end - 2) !== 34) return null; // "}
  const raw = s.slice(i, end - 2);
  const text = raw.indexOf('\\') >= 0 ? JSON.parse(`"${raw}"`) : raw;
  return { kind: 'line', seq, ts, host, stream, text };
}

function newBatch() {
  const cap = 8192;
  return {
    n: 0, lastSeq: 0, hosts: [], others: [], text: [],
    seq: new Float64Array(cap), ts: new Float64Array(cap), host: new Uint16Array(cap), stream: new Uint8Array(cap),
  };
}

function grow(b) {
  for (const key of ['seq', 'ts', 'host', 'stream']) {
    const bigger = new b[key].constructor(b[key].length * 2);
    bigger.set(b[key]);
    b[key] = bigger;
  }
}
