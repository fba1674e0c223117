// What the tests read off the job page: only the hooks of DESIGN §6a.

import { waitFor, apiLog } from './harness.js';

/** The log's hooks, the job state and the host grid as the page shows them. */
export async function shown(page) {
  return page.evaluate(() => {
    const log = document.querySelector('[role="log"][aria-label="Job log"]');
    const state = document.querySelector('[data-job-state]');
    return {
      lastSeq: log ? Number(log.dataset.lastSeq) : -1,
      lineCount: log ? Number(log.dataset.lineCount) : -1,
      state: state ? state.dataset.jobState : null,
      hosts: Object.fromEntries([...document.querySelectorAll('[role="group"][aria-label="Hosts"] [data-host-state]')]
        .map((b) => [b.dataset.host, b.dataset.hostState])),
    };
  });
}

/** Waits until the page holds every event the API has for job `id`; returns the API log. */
export async function settled(sw, page, id, timeout = 20000) {
  let log;
  await waitFor(async () => {
    log = await apiLog(sw, id);
    const s = await shown(page);
    return s.lastSeq === log.lastSeq && s.lineCount === log.lines.length && ['succeeded', 'failed', 'cancelled', 'lost'].includes(s.state);
  }, { what: `page to show all of job ${id}`, timeout });
  return log;
}

/** The seqs of the line rows in the DOM now. */
export function renderedSeqs(page) {
  return page.$$eval('[role="log"] [data-seq]', (rows) => rows.map((r) => Number(r.dataset.seq)));
}

/** Starts `task` through the API; returns the job id. */
export async function startJob(sw, task, params = {}) {
  const res = await sw.api('/api/jobs', { method: 'POST', body: { task, params } });
  if (res.status !== 201) throw new Error(`POST /api/jobs ${task}: ${res.status} ${res.text}`);
  return res.json.id;
}

/** Waits for a job to end (by the API). */
export async function ended(sw, id, timeout = 60000) {
  return waitFor(async () => {
    const j = (await sw.api(`/api/jobs/${id}`)).json;
    return ['succeeded', 'failed', 'cancelled', 'lost'].includes(j.state) && j;
  }, { what: `job ${id} to end`, timeout, every: 200 });
}

/**
 * Every row of the log, top to bottom, as {seq, host, stream, text}: scrolls the log a
 * viewport at a time (each step waits for a frame, so the page has drawn it) and joins
 * what each step shows. Throws when a step's rows are not in strictly increasing seq
 * order, or when two steps do not overlap (a row could hide between them).
 */
export async function everyRow(page) {
  return page.evaluate(async () => {
    const log = document.querySelector('[role="log"][aria-label="Job log"]');
    const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const out = [];
    let top = 0;
    log.scrollTop = 0;
    for (;;) {
      await frame();
      const rows = [...log.querySelectorAll('[data-seq]')].map((r) => ({
        seq: Number(r.dataset.seq), host: r.dataset.host, stream: r.dataset.stream, text: r.querySelector('.t').textContent,
      }));
      for (let k = 1; k < rows.length; k++) {
        if (rows[k].seq <= rows[k - 1].seq) throw new Error(`rows out of order: ${rows[k - 1].seq} then ${rows[k].seq}`);
      }
      const last = out.length ? out[out.length - 1].seq : 0;
      if (out.length && rows.length && !rows.some((r) => r.seq === last)) throw new Error(`no overlap after seq ${last}`);
      for (const r of rows) if (r.seq > last) out.push(r);
      const max = log.scrollHeight - log.clientHeight;
      if (top >= max) return out;
      top = Math.min(max, top + Math.max(1, log.clientHeight - 60));
      log.scrollTop = top;
    }
  });
}
