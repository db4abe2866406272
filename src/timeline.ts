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
  /** memory: bytes in the top panel; cpu and gpu: the load panel, each on its own axis */
  axis: 'bytes' | 'cpu' | 'gpu';
  dash?: string;
}
const SERIES: Series[] = [
  { key: 'treeRssBytes', label: 'RSS, process tree', color: '#1f6feb', axis: 'bytes' },
  { key: 'rssBytes', label: 'RSS', color: '#1f6feb', axis: 'bytes' },
  { key: 'gpuProcessMemoryBytes', label: 'GPU memory (process)', color: '#2da44e', axis: 'bytes' },
  { key: 'cpuPercent', label: 'CPU (% of one core)', color: '#bf8700', axis: 'cpu', dash: '5 3' },
  { key: 'gpuUtilizationPercent', label: 'GPU utilization (%)', color: '#cf222e', axis: 'gpu', dash: '2 3' },
];

/** A rectangle in the chart's pixels. */
interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}
type Segment = [number, number, number, number];

const overlaps = (a: Box, b: Box): boolean => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;

/** Whether the segment crosses or touches the box (Liang–Barsky clipping). */
function segmentHitsBox([x1, y1, x2, y2]: Segment, b: Box): boolean {
  let t0 = 0;
  let t1 = 1;
  const dx = x2 - x1;
  const dy = y2 - y1;
  for (const [p, q] of [
    [-dx, x1 - b.x1],
    [dx, b.x2 - x1],
    [-dy, y1 - b.y1],
    [dy, b.y2 - y1],
  ]) {
    if (p === 0) {
      if (q < 0) return false;
    } else {
      const r = q / p;
      if (p < 0) t0 = Math.max(t0, r);
      else t1 = Math.min(t1, r);
      if (t0 > t1) return false;
    }
  }
  return true;
}

// The peak labels' font (12 px, bold): a generous width per character, so that the box a label is kept clear in
// holds its real glyphs (DejaVu Sans, the widest of the usual system-ui fonts, is about 7.3 px a character here).
const LABEL_CHAR_PX = 7.8;
const LABEL_ASCENT_PX = 12;
const LABEL_DESCENT_PX = 4;

/**
 * Where a peak's label goes: beside the marker, at the first of a few spots whose box no line of the panel crosses
 * and no other label holds; failing all, in the strip above the panel, where no line is (a leader line joins it to
 * the marker).
 */
function placeLabel(
  px: number,
  py: number,
  width: number,
  panel: Box,
  lines: Segment[],
  taken: Box[],
): { x: number; y: number; anchor: 'start' | 'end'; box: Box; leader: boolean } {
  const pad = 3;
  const marker: Box = { x1: px - 8, y1: py - 8, x2: px + 8, y2: py + 8 };
  const clear = (box: Box) => {
    const grown = { x1: box.x1 - pad, y1: box.y1 - pad, x2: box.x2 + pad, y2: box.y2 + pad };
    return (
      box.x1 >= panel.x1 &&
      box.x2 <= panel.x2 &&
      box.y1 >= panel.y1 &&
      box.y2 <= panel.y2 &&
      !overlaps(grown, marker) &&
      !taken.some((t) => overlaps(grown, t)) &&
      !lines.some((l) => segmentHitsBox(l, grown))
    );
  };
  const sides: ('start' | 'end')[] = px > panel.x1 + (panel.x2 - panel.x1) * 0.6 ? ['end', 'start'] : ['start', 'end'];
  for (const dy of [-12, -28, -44, 22, 38, -60, 54]) {
    for (const anchor of sides) {
      const x = anchor === 'start' ? px + 10 : px - 10;
      const y = py + dy;
      const box = {
        x1: anchor === 'start' ? x : x - width,
        x2: anchor === 'start' ? x + width : x,
        y1: y - LABEL_ASCENT_PX,
        y2: y + LABEL_DESCENT_PX,
      };
      if (clear(box)) return { x, y, anchor, box, leader: false };
    }
  }
  // above the panel: only the title is there, higher up
  const y = panel.y1 - 8;
  let x1 = Math.min(Math.max(px - width / 2, panel.x1), panel.x2 - width);
  let box = { x1, x2: x1 + width, y1: y - LABEL_ASCENT_PX, y2: y + LABEL_DESCENT_PX };
  while (taken.some((t) => overlaps(box, t)) && box.x2 + width + 12 <= panel.x2) {
    x1 = box.x2 + 12;
    box = { x1, x2: x1 + width, y1: box.y1, y2: box.y2 };
  }
  return { x: x1, y, anchor: 'start', box, leader: true };
}

/** The title cut to the width it has (15 px bold, about 8.6 px a character), ending in '…' when cut. */
function fitTitle(title: string, widthPx: number): string {
  const max = Math.max(8, Math.floor(widthPx / 8.6));
  return title.length <= max ? title : `${title.slice(0, max - 1)}…`;
}

function svg(tl: Timeline, o: RenderOptions): string {
  const W = o.width ?? 900;
  const H = o.height ?? 500;
  const pts = tl.points;
  // The memory line: the tree when there is one, else this process.
  const hasTree = pts.some((p) => p.treeRssBytes !== null);
  const shown = SERIES.filter((s) => (s.key === 'rssBytes' ? !hasTree : true)).filter((s) =>
    pts.some((p) => p[s.key] !== null),
  );
  const hasGpuUtil = shown.some((s) => s.axis === 'gpu');
  // Two panels sharing the time axis: memory on top; below, the load: CPU on the left axis in % of one core (up to
  // the CPU count × 100), GPU utilization on its own 0–100 % axis on the right, so a busy GPU is a full-height line
  // however many cores were busy.
  const m = { l: 78, r: hasGpuUtil ? 62 : 30, t: 50, b: 74 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const gap = 34;
  const memH = Math.round((ph - gap) * 0.6);
  const loadTop = m.t + memH + gap;
  const loadH = ph - memH - gap;
  const memPanel: Box = { x1: m.l, y1: m.t, x2: m.l + pw, y2: m.t + memH };
  const loadPanel: Box = { x1: m.l, y1: loadTop, x2: m.l + pw, y2: loadTop + loadH };
  const tMax = Math.max(1, ...pts.map((p) => p.tMs));
  const bytesMax = Math.max(
    1,
    ...pts.flatMap((p) => shown.filter((s) => s.axis === 'bytes').map((s) => (p[s.key] as number | null) ?? 0)),
  );
  const cpuMax = Math.max(100, ...pts.map((p) => p.cpuPercent ?? 0));
  const [bDiv, bUnit] = byteUnit(bytesMax);
  const bStep = niceStep(bytesMax / bDiv, 4) * bDiv;
  let bTop = Math.ceil(bytesMax / bStep) * bStep;
  if (bytesMax > 0.92 * bTop) bTop += bStep; // headroom: a peak at the top would lie on the frame
  // four steps, like the GPU axis's 0, 25, 50, 75, 100: the two axes share the panel's grid lines
  const cStep = niceStep(cpuMax, 4);
  const cTop = 4 * cStep;
  const useSec = tMax >= 2000;
  const tStep = niceStep(useSec ? tMax / 1000 : tMax, 8) * (useSec ? 1000 : 1);
  const x = (t: number) => m.l + (t / tMax) * pw;
  const yB = (b: number) => memPanel.y2 - (b / bTop) * memH;
  // the load axes' top (100 % of the GPU, cTop of the CPU) a few pixels below the frame, so a line there shows
  const loadMaxY = loadPanel.y1 + 6;
  const loadSpan = loadPanel.y2 - loadMaxY;
  const yC = (p: number) => loadPanel.y2 - (p / cTop) * loadSpan;
  const yG = (p: number) => loadPanel.y2 - (Math.min(100, Math.max(0, p)) / 100) * loadSpan;
  const yOf = { bytes: yB, cpu: yC, gpu: yG };
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [];
  const title = o.title ?? tl.title ?? 'taskmeter timeline';
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="${esc(title)}">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<title>${esc(title)}</title>`,
    `<text id="chart-title" x="${m.l}" y="24" font-size="15" font-weight="600" fill="#24292f">` +
      `${esc(fitTitle(title, W - m.l - 12))}</text>`,
  );
  // grids, frames and tick labels of each panel
  const ticks = (top: number, step: number) => {
    const v: number[] = [];
    for (let t = 0; t <= top + 1e-9; t += step) v.push(t);
    return v;
  };
  out.push('<g id="axes" stroke="#d0d7de" stroke-width="1">');
  for (const [panel, ys] of [
    [memPanel, ticks(bTop, bStep).map(yB)],
    [loadPanel, ticks(cTop, cStep).map(yC)],
  ] as const) {
    for (const y of ys) out.push(`<line x1="${panel.x1}" x2="${panel.x2}" y1="${f(y)}" y2="${f(y)}"/>`);
    out.push(
      `<rect x="${panel.x1}" y="${panel.y1}" width="${pw}" height="${panel.y2 - panel.y1}" fill="none" ` +
        'stroke="#57606a"/>',
    );
  }
  out.push('</g>');
  const tickLabels = (id: string, attrs: string, items: string[]) =>
    out.push(`<g id="${id}" fill="#57606a"${attrs}>`, ...items, '</g>');
  tickLabels(
    'axis-memory',
    ` data-unit="${bUnit}" data-max="${bTop / bDiv}" data-y-zero="${f(memPanel.y2)}" data-y-max="${f(memPanel.y1)}"`,
    ticks(bTop, bStep).map(
      (b) => `<text x="${m.l - 6}" y="${f(yB(b) + 4)}" text-anchor="end">${+(b / bDiv).toFixed(2)}</text>`,
    ),
  );
  tickLabels(
    'axis-cpu',
    ` data-max="${cTop}" data-y-zero="${f(loadPanel.y2)}" data-y-max="${f(loadMaxY)}"`,
    ticks(cTop, cStep).map((p) => `<text x="${m.l - 6}" y="${f(yC(p) + 4)}" text-anchor="end">${+p.toFixed(1)}</text>`),
  );
  if (hasGpuUtil) {
    tickLabels(
      'axis-gpu',
      ` data-max="100" data-y-zero="${f(loadPanel.y2)}" data-y-max="${f(loadMaxY)}"`,
      [0, 25, 50, 75, 100].map((p) => `<text x="${m.l + pw + 6}" y="${f(yG(p) + 4)}">${p}</text>`),
    );
  }
  const timeTicks: string[] = [];
  for (let t = 0; t <= tMax + 1e-9; t += tStep) {
    timeTicks.push(
      `<text x="${f(x(t))}" y="${loadPanel.y2 + 16}" text-anchor="middle">` +
        `${useSec ? +(t / 1000).toFixed(2) : +t.toFixed(1)}</text>`,
    );
  }
  tickLabels('axis-time', '', timeTicks);
  const side = (id: string, cx: number, cy: number, turn: number, text: string) =>
    `<text id="${id}" transform="translate(${cx} ${f(cy)}) rotate(${turn})" text-anchor="middle" fill="#24292f">` +
    `${text}</text>`;
  out.push(
    `<text id="x-label" x="${m.l + pw / 2}" y="${loadPanel.y2 + 34}" text-anchor="middle" fill="#24292f">` +
      `time (${useSec ? 's' : 'ms'})</text>`,
    side('y-label-memory', 20, m.t + memH / 2, -90, `memory (${bUnit})`),
    side('y-label-cpu', 20, loadTop + loadH / 2, -90, 'CPU (% of one core)'),
  );
  if (hasGpuUtil) out.push(side('y-label-gpu', W - 14, loadTop + loadH / 2, 90, 'GPU utilization (%)'));
  // series
  const memLines: Segment[] = [];
  for (const s of shown) {
    const y = yOf[s.axis];
    let d = '';
    let prev: [number, number] | null = null;
    for (const p of pts) {
      const v = p[s.key] as number | null;
      if (v === null) {
        prev = null;
        continue;
      }
      const at: [number, number] = [x(p.tMs), y(v)];
      d += `${prev ? 'L' : 'M'}${f(at[0])} ${f(at[1])}`;
      if (s.axis === 'bytes') memLines.push(prev ? [prev[0], prev[1], at[0], at[1]] : [at[0], at[1], at[0], at[1]]);
      prev = at;
    }
    if (pts.filter((p) => p[s.key] !== null).length === 1) {
      const p = pts.find((q) => q[s.key] !== null)!;
      out.push(
        `<circle class="series series-${s.key}" cx="${f(x(p.tMs))}" cy="${f(y(p[s.key] as number))}" r="3" ` +
          `fill="${s.color}"/>`,
      );
    }
    out.push(
      `<path class="series series-${s.key}" data-axis="${s.axis}" d="${d}" fill="none" stroke="${s.color}" ` +
        `stroke-width="${s.axis === 'bytes' ? 2.2 : 1.5}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} ` +
        'stroke-linejoin="round"/>',
    );
  }
  // peaks of the memory series, each labelled where no line is
  const taken: Box[] = [];
  for (const s of shown.filter((q) => q.axis === 'bytes')) {
    let best: TimelinePoint | null = null;
    for (const p of pts)
      if ((p[s.key] as number | null) !== null && (!best || (p[s.key] as number) > (best[s.key] as number))) best = p;
    if (!best) continue;
    const px = x(best.tMs);
    const py = yB(best[s.key] as number);
    const label = `peak ${formatBytes(best[s.key] as number)} at ${(best.tMs / 1000).toFixed(2)} s`;
    const at = placeLabel(px, py, label.length * LABEL_CHAR_PX, memPanel, memLines, taken);
    taken.push(at.box);
    const leader = at.leader
      ? `<line x1="${f(px)}" y1="${f(py - 6)}" x2="${f((at.box.x1 + at.box.x2) / 2)}" y2="${f(at.box.y2 + 1)}" ` +
        `stroke="${s.color}" stroke-width="1" stroke-dasharray="2 2"/>`
      : '';
    out.push(
      `<g class="peak peak-${s.key}"><circle cx="${f(px)}" cy="${f(py)}" r="5" fill="none" ` +
        `stroke="${s.color}" stroke-width="2"/>${leader}` +
        `<text x="${f(at.x)}" y="${f(at.y)}" text-anchor="${at.anchor}" fill="${s.color}" font-weight="600">` +
        `${esc(label)}</text></g>`,
    );
  }
  // legend
  out.push('<g id="legend">');
  let lx = m.l;
  shown.forEach((s) => {
    const ly = H - 14;
    const at = lx;
    lx += 28 + s.label.length * 7 + 24;
    out.push(
      `<line x1="${at}" x2="${at + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"` +
        `${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>` +
        `<text x="${at + 28}" y="${ly}" fill="#24292f">${esc(s.label)}</text>`,
    );
  });
  out.push('</g>');
  if (pts.length === 0) {
    out.push(`<text x="${m.l + pw / 2}" y="${m.t + memH / 2}" text-anchor="middle" fill="#57606a">no samples</text>`);
  } else if (!shown.some((s) => s.axis === 'bytes')) {
    out.push(
      `<text id="no-memory" x="${m.l + pw / 2}" y="${m.t + memH / 2}" text-anchor="middle" fill="#57606a">` +
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
  // stretched: more than a tenth over the asked interval (a mean of 10.04 ms is 10 ms, not a stretch)
  const stretched =
    typeof eff === 'number' && eff > tl.sampleIntervalMs * 1.1
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
