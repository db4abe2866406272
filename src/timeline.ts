// The timeline of a window: a bounded series (at most 2048 points; long runs are merged pairwise, keeping the
// memory maxima) and its rendering as SVG, a self-contained HTML page or CSV.
import {
  TL_CPU_PERCENT,
  TL_GPU_PROCESS_BYTES,
  TL_GPU_UTIL_PERCENT,
  TL_RSS_BYTES,
  TL_TIME_MS,
  TL_TREE_RSS_BYTES,
} from './binding';
import { describe } from './options';
import { codedError, rangeError, typeError } from './errors';

export interface TimelinePoint {
  /** ms since the window started */
  tMs: number;
  /** this process's RSS (in-process windows); null in the timeline of a tracked process tree or command */
  rssBytes: number | null;
  /** the tracked process tree's summed RSS (process tracking only) */
  treeRssBytes: number | null;
  /** GPU memory of the tracked pids, all GPUs */
  gpuProcessMemoryBytes: number | null;
  /** GPU utilization, mean over GPUs */
  gpuUtilizationPercent: number | null;
  /** CPU use of this process, or of the tree (null until a sample saw the tree), since the previous point */
  cpuPercent: number | null;
}

export interface Timeline {
  /** epoch ms of tMs = 0 */
  startedAt: number;
  /** the sampling interval asked for, ms (long runs merge points, so they can be further apart) */
  sampleIntervalMs: number;
  /** process trees: the mean interval the sampler used, stretched to keep its cost under 1 % of a core, ms */
  effectiveSampleIntervalMs?: number | null;
  points: TimelinePoint[];
  /** what the chart calls the run (e.g. the command line) */
  title?: string;
}

const n = (v: number): number | null => (Number.isFinite(v) ? v : null);

export function timelineFrom(
  buf: Float64Array,
  columns: number,
  startedAt: number,
  sampleIntervalMs: number,
): Timeline {
  const points: TimelinePoint[] = [];
  for (let i = 0; i + columns <= buf.length; i += columns) {
    points.push({
      tMs: buf[i + TL_TIME_MS],
      rssBytes: n(buf[i + TL_RSS_BYTES]),
      treeRssBytes: n(buf[i + TL_TREE_RSS_BYTES]),
      gpuProcessMemoryBytes: n(buf[i + TL_GPU_PROCESS_BYTES]),
      gpuUtilizationPercent: n(buf[i + TL_GPU_UTIL_PERCENT]),
      cpuPercent: n(buf[i + TL_CPU_PERCENT]),
    });
  }
  return { startedAt, sampleIntervalMs, points };
}

export interface RenderOptions {
  /** 'svg' (default), 'html' (a self-contained page with the SVG) or 'csv' */
  format?: 'svg' | 'html' | 'csv';
  /** chart title; defaults to the timeline's title */
  title?: string;
  width?: number;
  height?: number;
}

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function niceStep(range: number, ticks: number): number {
  const raw = range / Math.max(1, ticks);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

const UNITS: [number, string][] = [
  [2 ** 30, 'GiB'],
  [2 ** 20, 'MiB'],
  [2 ** 10, 'KiB'],
];
function byteUnit(max: number): [number, string] {
  for (const u of UNITS) if (max >= u[0]) return u;
  return [1, 'B'];
}
export function formatBytes(bytes: number): string {
  const [div, unit] = byteUnit(bytes);
  if (div === 1) return `${Math.round(bytes)} B`; // whole bytes: "0 B", never "0.00 B"
  const v = bytes / div;
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;
}

function checkTimeline(t: unknown): Timeline {
  if (t && typeof t === 'object' && 'wallTimeMs' in t && !(t as { timeline?: unknown }).timeline) {
    throw codedError(
      TypeError,
      'taskmeter: renderTimeline(usage): this usage has no timeline; measure with the option { timeline: true } ' +
        '(measure(fn, { timeline: true }), new ResourceTracker({ timeline: true }), ' +
        'measureCommand(…, { timeline: true }))',
      'ERR_TASKMETER_NO_TIMELINE',
    );
  }
  const tl = (
    t && typeof t === 'object' && 'timeline' in (t as object) ? (t as { timeline: unknown }).timeline : t
  ) as Timeline;
  if (!tl || typeof tl !== 'object' || !Array.isArray(tl.points)) {
    throw typeError(`taskmeter: renderTimeline(timeline): expected a Timeline (usage.timeline), got ${describe(tl)}`);
  }
  return tl;
}

// rss_bytes is the task's memory: this process's in an in-process timeline, the tree's summed RSS in the timeline of
// a tracked process or command (never taskmeter's own there); tree_rss_bytes repeats the tree's for the latter.
function csv(tl: Timeline): string {
  const head = 't_seconds,rss_bytes,tree_rss_bytes,gpu_process_memory_bytes,gpu_utilization_percent,cpu_percent';
  const cell = (v: number | null, digits = 0) => (v === null ? '' : digits ? v.toFixed(digits) : String(Math.round(v)));
  const rows = tl.points.map((p) =>
    [
      (p.tMs / 1000).toFixed(3),
      cell(p.rssBytes ?? p.treeRssBytes),
      cell(p.treeRssBytes),
      cell(p.gpuProcessMemoryBytes),
      cell(p.gpuUtilizationPercent, 1),
      cell(p.cpuPercent, 1),
    ].join(','),
  );
  return [head, ...rows].join('\n') + '\n';
}

interface Series {
  key: keyof TimelinePoint;
  label: string;
  color: string;
  axis: 'bytes' | 'percent';
  dash?: string;
}
const SERIES: Series[] = [
  { key: 'treeRssBytes', label: 'RSS, process tree', color: '#1f6feb', axis: 'bytes' },
  { key: 'rssBytes', label: 'RSS', color: '#1f6feb', axis: 'bytes' },
  { key: 'gpuProcessMemoryBytes', label: 'GPU memory (process)', color: '#2da44e', axis: 'bytes' },
  { key: 'cpuPercent', label: 'CPU', color: '#bf8700', axis: 'percent', dash: '5 3' },
  { key: 'gpuUtilizationPercent', label: 'GPU utilization', color: '#cf222e', axis: 'percent', dash: '2 3' },
];

function svg(tl: Timeline, o: RenderOptions): string {
  const W = o.width ?? 900;
  const H = o.height ?? 420;
  const m = { l: 78, r: 62, t: 48, b: 78 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = tl.points;
  // The memory line: the tree when there is one, else this process.
  const hasTree = pts.some((p) => p.treeRssBytes !== null);
  const shown = SERIES.filter((s) => (s.key === 'rssBytes' ? !hasTree : true)).filter((s) =>
    pts.some((p) => p[s.key] !== null),
  );
  const tMax = Math.max(1, ...pts.map((p) => p.tMs));
  const bytesMax = Math.max(
    1,
    ...pts.flatMap((p) => shown.filter((s) => s.axis === 'bytes').map((s) => (p[s.key] as number | null) ?? 0)),
  );
  const pctMax = Math.max(100, ...pts.map((p) => Math.max(p.cpuPercent ?? 0, p.gpuUtilizationPercent ?? 0)));
  const [bDiv, bUnit] = byteUnit(bytesMax);
  const bStep = niceStep(bytesMax / bDiv, 5) * bDiv;
  const bTop = Math.ceil(bytesMax / bStep) * bStep;
  const pStep = niceStep(pctMax, 5);
  const pTop = Math.ceil(pctMax / pStep) * pStep;
  const useSec = tMax >= 2000;
  const tStep = niceStep(useSec ? tMax / 1000 : tMax, 8) * (useSec ? 1000 : 1);
  const x = (t: number) => m.l + (t / tMax) * pw;
  const yB = (b: number) => m.t + ph - (b / bTop) * ph;
  const yP = (p: number) => m.t + ph - (p / pTop) * ph;
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [];
  const title = o.title ?? tl.title ?? 'taskmeter timeline';
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="${esc(title)}">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text id="chart-title" x="${m.l}" y="24" font-size="15" font-weight="600" fill="#24292f">${esc(title)}</text>`,
  );
  // grid and axes
  out.push('<g id="axes" stroke="#d0d7de" stroke-width="1">');
  for (let b = 0; b <= bTop + 1e-9; b += bStep)
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${f(yB(b))}" y2="${f(yB(b))}"/>`);
  out.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" stroke="#57606a"/>`);
  out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#57606a"/>`);
  out.push(`<line x1="${m.l + pw}" x2="${m.l + pw}" y1="${m.t}" y2="${m.t + ph}" stroke="#57606a"/>`);
  out.push('</g><g id="tick-labels" fill="#57606a">');
  for (let b = 0; b <= bTop + 1e-9; b += bStep) {
    out.push(`<text x="${m.l - 6}" y="${f(yB(b) + 4)}" text-anchor="end">${+(b / bDiv).toFixed(2)}</text>`);
  }
  for (let p = 0; p <= pTop + 1e-9; p += pStep) {
    out.push(`<text x="${m.l + pw + 6}" y="${f(yP(p) + 4)}">${+p.toFixed(1)}</text>`);
  }
  for (let t = 0; t <= tMax + 1e-9; t += tStep) {
    out.push(
      `<text x="${f(x(t))}" y="${m.t + ph + 16}" text-anchor="middle">` +
        `${useSec ? +(t / 1000).toFixed(2) : +t.toFixed(1)}</text>`,
    );
  }
  out.push('</g>');
  out.push(
    `<text id="x-label" x="${m.l + pw / 2}" y="${m.t + ph + 34}" text-anchor="middle" fill="#24292f">` +
      `time (${useSec ? 's' : 'ms'})</text>`,
    `<text id="y-label-memory" transform="translate(20 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle" ` +
      `fill="#24292f">memory (${bUnit})</text>`,
    `<text id="y-label-percent" transform="translate(${W - 14} ${m.t + ph / 2}) rotate(90)" text-anchor="middle" ` +
      'fill="#24292f">CPU / GPU utilization (%)</text>',
  );
  // series
  for (const s of shown) {
    const y = s.axis === 'bytes' ? yB : yP;
    let d = '';
    let pen = false;
    for (const p of pts) {
      const v = p[s.key] as number | null;
      if (v === null) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${f(x(p.tMs))} ${f(y(v))}`;
      pen = true;
    }
    if (pts.filter((p) => p[s.key] !== null).length === 1) {
      const p = pts.find((q) => q[s.key] !== null)!;
      out.push(
        `<circle class="series series-${s.key}" cx="${f(x(p.tMs))}" cy="${f(y(p[s.key] as number))}" r="3" ` +
          `fill="${s.color}"/>`,
      );
    }
    out.push(
      `<path class="series series-${s.key}" d="${d}" fill="none" stroke="${s.color}" ` +
        `stroke-width="${s.axis === 'bytes' ? 2.2 : 1.5}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} ` +
        'stroke-linejoin="round"/>',
    );
  }
  // peaks of the memory series
  for (const s of shown.filter((q) => q.axis === 'bytes')) {
    let best: TimelinePoint | null = null;
    for (const p of pts)
      if ((p[s.key] as number | null) !== null && (!best || (p[s.key] as number) > (best[s.key] as number))) best = p;
    if (!best) continue;
    const px = x(best.tMs);
    const py = yB(best[s.key] as number);
    const label = `peak ${formatBytes(best[s.key] as number)} at ${(best.tMs / 1000).toFixed(2)} s`;
    const anchor = px > m.l + pw * 0.7 ? 'end' : 'start';
    out.push(
      `<g class="peak peak-${s.key}"><circle cx="${f(px)}" cy="${f(py)}" r="5" fill="none" ` +
        `stroke="${s.color}" stroke-width="2"/>` +
        `<text x="${f(px + (anchor === 'end' ? -9 : 9))}" y="${f(Math.max(m.t + 12, py - 8))}" ` +
        `text-anchor="${anchor}" fill="${s.color}" font-weight="600">${esc(label)}</text></g>`,
    );
  }
  // legend
  out.push('<g id="legend">');
  shown.forEach((s, i) => {
    const lx = m.l + i * Math.min(170, pw / Math.max(1, shown.length));
    const ly = H - 18;
    out.push(
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"` +
        `${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>` +
        `<text x="${lx + 28}" y="${ly}" fill="#24292f">${esc(s.label)}${s.axis === 'percent' ? ' (%)' : ''}</text>`,
    );
  });
  out.push('</g>');
  if (pts.length === 0) {
    out.push(`<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" fill="#57606a">no samples</text>`);
  } else if (!shown.some((s) => s.axis === 'bytes')) {
    out.push(
      `<text id="no-memory" x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" fill="#57606a">` +
        'no memory sample (the task ended before the first one)</text>',
    );
  }
  out.push('</svg>');
  return out.join('\n');
}

const PAGE_STYLE =
  'body{margin:24px;font-family:system-ui,sans-serif;color:#24292f;background:#fff}p{color:#57606a;font-size:13px}';
const PAGE_NOTE = '(long runs are merged, keeping memory maxima) · made by taskmeter';

/** Renders a timeline (or a usage that has one) as SVG, a self-contained HTML page, or CSV. */
export function renderTimeline(
  timeline: Timeline | { timeline?: Timeline | null },
  options: RenderOptions = {},
): string {
  if (options === null || typeof options !== 'object') {
    throw typeError(`taskmeter: renderTimeline options must be an object, got ${describe(options)}`);
  }
  const format = options.format ?? 'svg';
  if (format !== 'svg' && format !== 'html' && format !== 'csv') {
    throw rangeError(
      `taskmeter: renderTimeline option "format" must be 'svg', 'html' or 'csv', got ${describe(format)}`,
      'ERR_INVALID_ARG_VALUE',
    );
  }
  const tl = checkTimeline(timeline);
  if (format === 'csv') return csv(tl);
  const chart = svg(tl, options);
  if (format === 'svg') return chart + '\n';
  const title = options.title ?? tl.title ?? 'taskmeter timeline';
  const started = Number.isFinite(tl.startedAt) ? new Date(tl.startedAt).toISOString() : '';
  const eff = tl.effectiveSampleIntervalMs;
  const stretched =
    typeof eff === 'number' && eff > tl.sampleIntervalMs
      ? `, stretched to ${+eff.toFixed(1)} ms to keep the sampler under 1 % of a core`
      : '';
  const sampledNote = `sampled every ${tl.sampleIntervalMs} ms${stretched} ${PAGE_NOTE}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(title)}</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<main>
${chart}
<p>Started ${esc(started)} · ${tl.points.length} points · ${sampledNote}</p>
</main>
</body>
</html>
`;
}
