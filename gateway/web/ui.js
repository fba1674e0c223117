// Small DOM helpers shared by the views: elements from data (never from markup strings),
// times and durations as people read them, and the error views.

/** `h('a', {href: '/'}, 'text', child)`: an element; attributes starting with `on` are
 * listeners, `class` and `dataset` as expected, null/false attributes left out. */
export function h(tag, attrs, ...children) {
  const el = tag.includes(':') ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An SVG element (same rules as h). */
export const s = (tag, attrs, ...children) => h(`svg:${tag}`, attrs, ...children);

/** "3.2 s", "4 min 05 s", "2 h 01 min". */
export function duration(ms) {
  if (!(ms >= 0)) return '';
  const sec = ms / 1000;
  if (sec < 10) return `${sec.toFixed(1)} s`;
  if (sec < 60) return `${Math.round(sec)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m} min ${String(Math.floor(sec % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** A past moment, short: "14:03:22" today, "2 Dec 14:03" before; the full time in `title`. */
export function when(iso) {
  if (!iso) return h('span', null, '–');
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  const text = today
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : d.toLocaleString([], { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  return h('time', { datetime: iso, title: d.toLocaleString() }, text);
}

/** The view for an error that ends the page: 403, 404 or the server being unreachable. */
export function errorView(main, e) {
  main.replaceChildren();
  const status = e && e.status;
  let title = 'Something went wrong';
  let text = e && e.message ? e.message : String(e);
  if (status === 403) {
    title = 'Not allowed';
    text = `${text}. Your role does not allow this; ask an admin for access, or log in as someone who has it.`;
  } else if (status === 404) {
    title = 'Not found';
  } else if (!status) {
    title = 'The gateway does not answer';
    text = 'shipwatch is not reachable right now; this page retries when you reload it.';
  }
  main.append(
    h('section', { class: 'error-view', role: 'alert', 'aria-labelledby': 'error-title' },
      h('h1', { id: 'error-title' }, title),
      h('p', null, text),
      status === 403 ? h('p', null, h('a', { href: `/login?next=${encodeURIComponent(location.pathname)}` }, 'Log in as someone else')) : null,
      h('p', null, h('a', { href: '/' }, 'Back to the dashboard'))));
  document.title = `${title} · shipwatch`;
  main.focus();
}

/** Text for screen readers only, announced politely. */
export function announce(text) {
  let el = document.getElementById('announce');
  if (!el) {
    el = h('div', { id: 'announce', class: 'sr-only', 'aria-live': 'polite' });
    document.body.append(el);
  }
  el.textContent = text;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);
export const BAD_HOST = new Set(['failed', 'timeout', 'unreachable']);
