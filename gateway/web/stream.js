// One job's events over /ws/jobs/{id}, in seq order with neither duplicate nor gap:
// reconnects resume with after= the last applied seq, a seq that skips is filled from
// the REST log before anything after it is applied, and a seq already applied is dropped.

import { wsUrl } from './api.js';
import { readLog, batchEvents } from './ndjson.js';

export class JobStream {
  /**
   * @param {number} id the job
   * @param {object} on  lastSeq() → highest applied seq; apply(events) in order;
   *                     status('live'|'reconnecting'|'ended'); resync() → Promise, before
   *                     each reconnect (throws while the gateway is away); ended() → bool
   */
  constructor(id, on) {
    this.id = id;
    this.on = on;
    this.ws = null;
    this.delay = 200;
    this.queue = [];
    this.blocked = false;
    this.closedCleanly = false;
    this.stopped = false;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
  }

  connect() {
    const ws = new WebSocket(wsUrl(`/ws/jobs/${this.id}?after=${this.on.lastSeq()}`));
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 200;
      this.on.status('live');
    };
    ws.onmessage = (m) => {
      if (this.blocked) this.queue.push(m.data);
      else this.take(m.data);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.ws = null;
      // 1000 is the server's "the job ended, that was everything"; anything else (1001
      // gateway stopping, 1006 killed, 4008 too slow) means come back for the rest.
      this.closedCleanly = ev.code === 1000;
      this.afterClose();
    };
  }

  afterClose() {
    if (this.blocked) return; // the gap fill calls back here when done
    if (this.stopped) return;
    if (this.closedCleanly && this.on.ended()) {
      this.on.status('ended');
      return;
    }
    this.on.status('reconnecting');
    setTimeout(() => this.reconnect(), this.delay);
    this.delay = Math.min(this.delay * 2, 3000);
  }

  async reconnect() {
    try {
      await this.on.resync();
    } catch (e) {
      if (e && e.status) return this.on.failed(e);
      setTimeout(() => this.reconnect(), this.delay);
      this.delay = Math.min(this.delay * 2, 3000);
      return;
    }
    if (this.on.ended() && this.closedCleanly) return this.on.status('ended');
    this.connect();
  }

  /** One frame: a JSON array of events in seq order. */
  take(data) {
    let events;
    try {
      events = JSON.parse(data);
    } catch {
      return;
    }
    if (!Array.isArray(events)) events = [events];
    this.ordered(events, 0);
  }

  ordered(events, from) {
    let last = this.on.lastSeq();
    let k = from;
    while (k < events.length && events[k].seq <= last) k++;
    let start = k;
    for (; k < events.length; k++) {
      const seq = events[k].seq;
      if (seq === last + 1) {
        last = seq;
        continue;
      }
      if (seq <= last) {
        // A duplicate inside a frame: apply what came before it, skip it.
        if (k > start) this.on.apply(events, start, k);
        start = k + 1;
        continue;
      }
      if (k > start) this.on.apply(events, start, k);
      this.fill(last, seq, events, k);
      return;
    }
    if (k > start) this.on.apply(events, start, k);
  }

  /** Fetches seqs after `last` and before `upTo` from the REST log, then goes on. */
  async fill(last, upTo, events, k) {
    this.blocked = true;
    try {
      const got = await gap(this.id, last, upTo);
      if (got.length) this.on.apply(got, 0, got.length);
      if (this.on.lastSeq() < upTo - 1) console.warn(`shipwatch: seqs ${this.on.lastSeq() + 1}–${upTo - 1} are not in the store`);
    } catch (e) {
      console.warn('shipwatch: could not fill a gap from the log', e);
    }
    this.on.forceSeq(upTo - 1);
    this.ordered(events, k);
    while (this.queue.length) {
      const q = this.queue;
      this.queue = [];
      for (const d of q) this.take(d);
    }
    this.blocked = false;
    if (!this.ws) this.afterClose();
  }
}

/** Events with last < seq < upTo, read from the REST log on from `last`. */
async function gap(id, last, upTo) {
  const out = [];
  const names = [];
  await readLog(id, last, (b) => {
    for (const name of b.hosts) names.push(name);
    for (const ev of batchEvents(b, names, id)) if (ev.seq < upTo) out.push(ev);
  }, { stopAt: upTo - 1 });
  return out;
}
