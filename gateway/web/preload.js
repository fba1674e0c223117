// A job page's stored log starts loading as soon as the page's first module runs, before
// who is asking, the job and the tasks are fetched: the worker (loader.js) reads it while
// the page builds itself, and what it hands over waits here until the log takes it.

/**
 * Job `id`'s stored log, loading in a worker: `take(on)` hands `on` every message so far
 * (loader.js: batch, done, error) and every later one; `stop()` ends the worker. Null
 * when this browser cannot start a module worker.
 */
export function preloadLog(id) {
  let worker;
  try {
    worker = new Worker(new URL('./loader.js', import.meta.url), { type: 'module' });
  } catch {
    return null;
  }
  const early = [];
  let handler = null;
  const hand = (data) => (handler ? handler(data) : early.push(data));
  worker.onmessage = ({ data }) => hand(data);
  worker.onerror = () => hand({ type: 'error', status: 0, message: 'the log worker failed' });
  worker.postMessage({ id });
  return {
    id,
    take(on) {
      handler = on;
      for (const data of early.splice(0)) on(data);
    },
    stop() {
      worker.terminate();
    },
  };
}
