// The wave timeline: one bar per host from its start to its end (or now), grouped by
// wave, coloured by outcome, with a <title> per bar. Redrawn whole: even a thousand bars
// are a few milliseconds, and a redraw is at most once a frame.

import { s, duration } from './ui.js';

const LABEL = 78;
const PAD = 10;
const BAR = 8;
const PITCH = 11;
const WAVE_GAP = 9;
const AXIS = 22;

export function drawTimeline(box, job, hosts, now) {
  const width = Math.max(260, Math.floor(box.clientWidth || 600));
  const waves = new Map();
  for (const x of hosts) {
    const w = x.wave || 0;
    if (!waves.has(w)) waves.set(w, []);
    waves.get(w).push(x);
  }
  const order = [...waves.keys()].sort((a, b) => a - b);
  const starts = hosts.map((x) => x.start).filter((t) => t !== null);
  const ends = hosts.map((x) => x.end).filter((t) => t !== null);
  const t0 = job.started_at ? Date.parse(job.started_at) : starts.length ? Math.min(...starts) : now;
  const running = !job.ended_at;
  const t1 = Math.max(job.ended_at ? Date.parse(job.ended_at) : now, ...ends, t0 + 1000);
  const span = t1 - t0;
  const plot = width - LABEL - PAD;
  const x = (t) => LABEL + Math.max(0, Math.min(1, (t - t0) / span)) * plot;

  const height = hosts.length * PITCH + order.length * WAVE_GAP + AXIS;
  const svg = box.querySelector('svg') || box.appendChild(s('svg', { role: 'img', 'aria-label': 'Wave timeline', 'aria-describedby': 'timeline-summary' }));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));

  const parts = [];
  let y = 4;
  for (const w of order) {
    const group = waves.get(w);
    const done = group.filter((g) => g.end !== null).length;
    const g = s('g', { class: 'wave' });
    g.append(s('text', { x: 0, y: y + BAR, class: 'wave-label' }, w ? `Wave ${w}` : 'Hosts',
      s('tspan', { class: 'wave-sub', dx: 4 }, `${done}/${group.length}`)));
    for (const hst of group) {
      if (hst.start !== null) {
        const end = hst.end !== null ? hst.end : running ? now : t1;
        const bx = x(hst.start);
        const bw = Math.max(2, x(end) - bx);
        const live = hst.end === null;
        const took = duration(end - hst.start);
        const rect = s('rect', { x: bx.toFixed(1), y, width: bw.toFixed(1), height: BAR, rx: 2, class: `bar host-${hst.state}${live ? ' live' : ''}` },
          s('title', null, `${hst.host} · wave ${hst.wave} · ${hst.state}${hst.exit_code !== null && hst.exit_code !== undefined ? ` (exit ${hst.exit_code})` : ''} · ${live ? 'running for ' : ''}${took}`));
        g.append(rect);
      } else {
        g.append(s('rect', { x: LABEL, y: y + BAR / 2 - 0.5, width: plot, height: 1, class: `idle host-${hst.state}` },
          s('title', null, `${hst.host} · wave ${hst.wave} · ${hst.state}`)));
      }
      y += PITCH;
    }
    parts.push(g);
    y += WAVE_GAP;
  }
  // A few round ticks along the bottom.
  const axis = s('g', { class: 'axis' });
  axis.append(s('line', { x1: LABEL, x2: LABEL + plot, y1: y, y2: y }));
  const step = niceStep(span / 5);
  for (let t = 0; t <= span + 1; t += step) {
    const tx = x(t0 + t);
    axis.append(s('line', { x1: tx, x2: tx, y1: y, y2: y + 4 }));
    const anchor = t === 0 ? 'start' : tx > LABEL + plot - 24 ? 'end' : 'middle';
    axis.append(s('text', { x: tx, y: y + 15, 'text-anchor': anchor }, t === 0 ? '0' : duration(t)));
  }
  parts.push(axis);
  svg.replaceChildren(...parts);

  let summary = box.querySelector('#timeline-summary');
  if (!summary) {
    summary = document.createElement('p');
    summary.id = 'timeline-summary';
    summary.className = 'sr-only';
    box.append(summary);
  }
  const finished = hosts.filter((h) => h.end !== null).length;
  summary.textContent = `${order.length} wave${order.length === 1 ? '' : 's'}, ${finished} of ${hosts.length} hosts finished, over ${duration(span)}.`;
}

function niceStep(raw) {
  const steps = [500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000];
  return steps.find((st) => st >= raw) || 3600000 * Math.ceil(raw / 3600000);
}
