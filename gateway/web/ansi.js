// ANSI text of a log line -> styled segments, never markup: every segment becomes a text
// node, so a line holding "<script>" shows those characters and nothing else. SGR colours
// and attributes are kept (16 colours as classes the theme can tune, 256/true colour as
// CSSOM styles, which the CSP allows); every other escape sequence is dropped. A "\r"
// redraw (progress bars) shows the line's final state, as a terminal would.

const ESC = '\x1b';

/** The text a terminal would show after the line's carriage returns. */
export function redraw(text) {
  if (text.indexOf('\r') < 0) return text;
  const parts = text.split('\r');
  while (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  if (text.indexOf(ESC) >= 0) {
    // Overlaying by column is wrong once escapes take no columns: the last redraw wins.
    for (let i = parts.length - 1; i >= 0; i--) if (parts[i] !== '') return parts[i];
    return '';
  }
  let shown = parts[0];
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i];
    shown = p + shown.slice(p.length);
  }
  return shown;
}

// CSI (ESC [ params final), OSC (ESC ] … BEL or ESC \), and two-byte escapes.
// eslint-disable-next-line no-control-regex
const SEQ = /\x1b(?:\[([0-9;:?<=>]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** The line as plain text: what search matches and what Ctrl+F sees. */
export function plain(text) {
  let t = redraw(text);
  if (t.indexOf(ESC) >= 0) t = t.replace(SEQ, '');
  return t.replace(CONTROL, '');
}

/**
 * Segments of the line: [{text, cls, color, background}], where cls is a space-separated
 * list of classes (fg-N, bg-N, b, dim, i, u, inv) and color/background are CSS colours
 * for 256 and true colour.
 */
export function segments(text) {
  const t = redraw(text);
  if (t.indexOf(ESC) < 0) return [{ text: t.replace(CONTROL, ''), cls: '' }];
  const out = [];
  const st = { fg: null, bg: null, b: false, dim: false, i: false, u: false, inv: false };
  let last = 0;
  SEQ.lastIndex = 0;
  for (let m; (m = SEQ.exec(t)); ) {
    if (m.index > last) push(out, t.slice(last, m.index), st);
    last = SEQ.lastIndex;
    if (m[2] === 'm') sgr(st, m[1]);
  }
  if (last < t.length) push(out, t.slice(last), st);
  return out.length ? out : [{ text: '', cls: '' }];
}

function push(out, text, st) {
  text = text.replace(CONTROL, '');
  if (!text) return;
  const cls = [];
  let color, background;
  if (typeof st.fg === 'number') cls.push(`fg-${st.fg}`);
  else if (st.fg) color = st.fg;
  if (typeof st.bg === 'number') cls.push(`bg-${st.bg}`);
  else if (st.bg) background = st.bg;
  if (st.b) cls.push('b');
  if (st.dim) cls.push('dim');
  if (st.i) cls.push('i');
  if (st.u) cls.push('u');
  if (st.inv) cls.push('inv');
  out.push({ text, cls: cls.join(' '), color, background });
}

function sgr(st, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => (p === '' ? 0 : Number(p)));
  for (let k = 0; k < codes.length; k++) {
    const c = codes[k];
    if (c === 0) Object.assign(st, { fg: null, bg: null, b: false, dim: false, i: false, u: false, inv: false });
    else if (c === 1) st.b = true;
    else if (c === 2) st.dim = true;
    else if (c === 3) st.i = true;
    else if (c === 4) st.u = true;
    else if (c === 7) st.inv = true;
    else if (c === 22) st.b = st.dim = false;
    else if (c === 23) st.i = false;
    else if (c === 24) st.u = false;
    else if (c === 27) st.inv = false;
    else if (c >= 30 && c <= 37) st.fg = c - 30;
    else if (c >= 90 && c <= 97) st.fg = c - 90 + 8;
    else if (c === 39) st.fg = null;
    else if (c >= 40 && c <= 47) st.bg = c - 40;
    else if (c >= 100 && c <= 107) st.bg = c - 100 + 8;
    else if (c === 49) st.bg = null;
    else if (c === 38 || c === 48) {
      const [colour, used] = extended(codes, k + 1);
      k += used;
      if (c === 38) st.fg = colour;
      else st.bg = colour;
    }
  }
}

/** `5;N` or `2;R;G;B` after 38/48: the colour and how many codes it took. */
function extended(codes, at) {
  if (codes[at] === 5) {
    const n = codes[at + 1];
    if (!(n >= 0 && n <= 255)) return [null, 2];
    if (n < 16) return [n, 2];
    return [xterm256(n), 2];
  }
  if (codes[at] === 2) {
    const [r, g, b] = [codes[at + 1], codes[at + 2], codes[at + 3]].map((v) => Math.max(0, Math.min(255, v | 0)));
    return [`rgb(${r}, ${g}, ${b})`, 4];
  }
  return [null, 0];
}

function xterm256(n) {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v}, ${v}, ${v})`;
  }
  const i = n - 16;
  const step = (x) => (x === 0 ? 0 : 55 + x * 40);
  return `rgb(${step(Math.floor(i / 36))}, ${step(Math.floor(i / 6) % 6)}, ${step(i % 6)})`;
}
