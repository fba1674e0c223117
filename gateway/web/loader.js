// A module worker that reads every event a job has stored so far (ndjson.js) and hands
// the batches to the page, moving their columns rather than copying them, so reading and
// taking apart a million lines happens beside the page, not on its main thread. The page
// then goes live over the WebSocket with after= the last seq this delivered.

import { readLog } from './ndjson.js';

self.onmessage = async ({ data }) => {
  try {
    const lastSeq = await readLog(data.id, data.after || 0, (b) => {
      const moved = [b.seq.buffer, b.ts.buffer, b.host.buffer, b.stream.buffer, b.off.buffer];
      if (b.poff) moved.push(b.poff.buffer);
      self.postMessage({ type: 'batch', ...b }, moved);
    });
    self.postMessage({ type: 'done', lastSeq });
  } catch (e) {
    self.postMessage({ type: 'error', status: e && e.status, message: String(e && e.message ? e.message : e) });
  }
};
