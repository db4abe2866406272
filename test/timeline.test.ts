// The timeline: its rendering (SVG, HTML, CSV), and the page the CLI writes, opened in real headless Chromium
// (Debian's chromium, installed by scripts/system-deps.sh; never a downloaded browser).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type ChildResult,
  fakeNvml,
  findSystemTool,
  gpuEnv,
  MiB,
  python3Path,
  requireSystemTool,
  run,
  runCli,
  writeFakeNvmlScenario,
} from './helpers';
import * as tm from '../dist/index.js';

const work = mkdtempSync(join(tmpdir(), 'taskmeter-timeline-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const python = python3Path();

const synthetic: tm.Timeline = {
  startedAt: Date.UTC(2026, 0, 1),
  sampleIntervalMs: 10,
  title: 'train <model> & "eval"',
  points: Array.from({ length: 250 }, (_, i) => ({
    tMs: i * 10,
    rssBytes: null,
    treeRssBytes: (100 + (i === 120 ? 400 : i)) * MiB,
    gpuProcessMemoryBytes: i > 50 ? 2048 * MiB : null,
    gpuUtilizationPercent: i > 50 ? 80 : null,
    cpuPercent: 95 + (i % 10),
  })),
};

function chromium(args: string[]) {
  const profile = mkdtempSync(join(work, 'profile-'));
  return run(
    'chromium',
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--hide-scrollbars',
      `--user-data-dir=${profile}`,
      ...args,
    ],
    { timeoutMs: 90_000 },
  );
}

describe('renderTimeline()', () => {
  it('draws axes with units, the series, the peak and a legend (SVG)', () => {
    const svg = tm.renderTimeline(synthetic);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).toContain('memory (GiB)'); // the unit follows the largest value (2 GiB of GPU memory)
    expect(svg).toContain('time (s)');
    expect(svg).toContain('CPU (% of one core)');
    expect(svg).toContain('GPU utilization (%)');
    expect(svg).toMatch(/class="series series-treeRssBytes"/);
    expect(svg).toMatch(/class="series series-gpuProcessMemoryBytes"/);
    expect(svg).toMatch(/class="series series-cpuPercent"/);
    expect(svg).toContain('peak 500 MiB at 1.20 s'); // the tree's peak, marked
    expect(svg).toContain('peak 2.00 GiB');
    expect(svg).toContain('id="legend"');
    expect(svg).toContain('train &lt;model&gt; &amp; &quot;eval&quot;'); // escaped
  });

  it('draws GPU utilization on its own 0–100 % axis: a busy GPU is a full-height line, whatever the CPU', () => {
    // 16 busy cores (1,600 % of one core) and a GPU at 100 %, then at 0 %
    const tl: tm.Timeline = {
      ...synthetic,
      points: synthetic.points.map((p, i) => ({
        ...p,
        cpuPercent: 1600,
        gpuUtilizationPercent: i < 100 ? 100 : i < 200 ? 0 : 50,
      })),
    };
    const svg = tm.renderTimeline(tl);
    const axis = (id: string) => {
      const g = new RegExp(
        `<g id="${id}"[^>]*data-max="([\\d.]+)" data-y-zero="([\\d.]+)" data-y-max="([\\d.]+)"`,
      ).exec(svg);
      expect(g, id).not.toBeNull();
      return { max: Number(g![1]), yZero: Number(g![2]), yMax: Number(g![3]) };
    };
    const gpu = axis('axis-gpu');
    const cpu = axis('axis-cpu');
    expect(gpu.max).toBe(100);
    expect(cpu.max).toBeGreaterThanOrEqual(1600);
    // its tick labels: 0 to 100
    const gpuTicks = /<g id="axis-gpu"[^>]*>([\s\S]*?)<\/g>/.exec(svg)![1];
    expect([...gpuTicks.matchAll(/>(\d+)<\/text>/g)].map((m) => Number(m[1]))).toEqual([0, 25, 50, 75, 100]);
    const path = /<path class="series series-gpuUtilizationPercent" data-axis="gpu" d="([^"]+)"/.exec(svg)![1];
    const ys = [...path.matchAll(/[ML][\d.]+ ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(ys).toHaveLength(250);
    // 100 % at the top of the load panel (full height), 0 % at its bottom, 50 % halfway: not the CPU's scale
    expect(ys.slice(0, 100).every((y) => Math.abs(y - gpu.yMax) < 0.2)).toBe(true);
    expect(ys.slice(100, 200).every((y) => Math.abs(y - gpu.yZero) < 0.2)).toBe(true);
    expect(Math.abs(ys[220] - (gpu.yZero + gpu.yMax) / 2)).toBeLessThan(0.2);
    // the CPU line at 1,600 % is drawn on its own axis
    const cpuPath = /<path class="series series-cpuPercent" data-axis="cpu" d="([^"]+)"/.exec(svg)![1];
    const cpuY = Number(/^M[\d.]+ ([\d.]+)/.exec(cpuPath)![1]);
    expect(Math.abs(cpuY - (cpu.yZero - ((cpu.yZero - cpu.yMax) * 1600) / cpu.max))).toBeLessThan(0.2);
  });

  it('says "GPU utilization" only when there is a GPU series', () => {
    const noGpu: tm.Timeline = {
      ...synthetic,
      points: synthetic.points.map((p) => ({ ...p, gpuUtilizationPercent: null, gpuProcessMemoryBytes: null })),
    };
    const svg = tm.renderTimeline(noGpu);
    expect(svg).not.toMatch(/GPU/);
    expect(svg).not.toContain('axis-gpu');
    expect(svg).toContain('CPU (% of one core)');
  });

  it('formatBytes writes whole bytes as such: 0 B, never "0.00 B"', () => {
    expect(tm.formatBytes(0)).toBe('0 B');
    expect(tm.formatBytes(512)).toBe('512 B');
    expect(tm.formatBytes(1536)).toBe('1.50 KiB');
    expect(tm.formatBytes(500 * MiB)).toBe('500 MiB');
  });

  it('writes a self-contained HTML page and CSV', () => {
    const html = tm.renderTimeline({ timeline: synthetic }, { format: 'html' });
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<svg');
    for (const external of [
      /\bsrc=/,
      /\bhref=/,
      /url\(/,
      /<script/,
      /<link/,
      /https?:\/\/(?!www\.w3\.org\/2000\/svg)/,
    ]) {
      expect(html).not.toMatch(external);
    }
    const csv = tm.renderTimeline(synthetic, { format: 'csv' }).trim().split('\n');
    expect(csv[0]).toBe(
      't_seconds,rss_bytes,tree_rss_bytes,gpu_process_memory_bytes,gpu_utilization_percent,cpu_percent',
    );
    expect(csv).toHaveLength(251);
    // rss_bytes is the task's memory: here a process tree's, so the tree's summed RSS
    expect(csv[121]).toBe(`1.200,${500 * MiB},${500 * MiB},${2048 * MiB},80.0,95.0`);
  });

  it('rejects what is not a timeline', () => {
    expect(() => tm.renderTimeline(null as any)).toThrow(TypeError);
    expect(() => tm.renderTimeline({ points: 3 } as any)).toThrow(TypeError);
    expect(() => tm.renderTimeline(synthetic, { format: 'png' as any })).toThrow(RangeError);
  });

  it('a measured window records a bounded timeline when asked', async () => {
    const { usage } = await tm.measure(
      async () => {
        const b = Buffer.alloc(64 * MiB, 1);
        await new Promise((r) => setTimeout(r, 150));
        return b.length;
      },
      { timeline: true, sampleIntervalMs: 5 },
    );
    const points = usage.timeline!.points;
    expect(points.length).toBeGreaterThan(10);
    expect(points.length).toBeLessThanOrEqual(2049);
    expect(Math.max(...points.map((p) => p.rssBytes ?? 0))).toBeGreaterThan(usage.rssStartBytes + 60 * MiB);
    expect(points.every((p, i) => i === 0 || p.tMs >= points[i - 1].tMs)).toBe(true);
    const none = tm.measureSync(() => 0);
    expect(none.usage.timeline).toBeUndefined();
  });

  it('stays bounded on a long run: points merge, peaks survive', async () => {
    // 1 ms samples for 5 s would be 5000 points; the series is halved past 2048, keeping memory maxima
    const t = new tm.ResourceTracker({ sampleIntervalMs: 1, timeline: true }).start();
    await new Promise((r) => setTimeout(r, 2500));
    let spike: Buffer | null = Buffer.alloc(96 * MiB, 1);
    await new Promise((r) => setTimeout(r, 60));
    spike = null;
    void spike;
    await new Promise((r) => setTimeout(r, 2500));
    const u = t.stop();
    const pts = u.timeline!.points;
    expect(pts.length).toBeLessThanOrEqual(2049);
    expect(pts.length).toBeGreaterThan(500);
    expect(Math.max(...pts.map((p) => p.rssBytes ?? 0))).toBeGreaterThan(u.rssStartBytes + 90 * MiB);
  }, 20_000);
});

describe("a command's timeline shows the command, never taskmeter's own process", () => {
  const cli = (args: string[]): Promise<ChildResult> => runCli(['-q', ...args]);

  it('`taskmeter -t z.svg -- true` draws no "RSS" series (that was taskmeter\'s own) and no peak of it', async () => {
    const svgFile = join(work, 'z.svg');
    const r = await cli(['-t', svgFile, '--', 'true']);
    expect(r.code, r.stderr).toBe(0);
    const svg = readFileSync(svgFile, 'utf8');
    expect(svg).not.toContain('series-rssBytes');
    expect(svg).not.toContain('peak-rssBytes');
    // whatever memory is drawn is the command's: far below a Node process's ~40 MiB
    for (const m of svg.matchAll(/peak ([\d.]+) (KiB|MiB|GiB)/g)) {
      const bytes = Number(m[1]) * { KiB: 1024, MiB: MiB, GiB: 1024 * MiB }[m[2] as 'KiB'];
      expect(bytes).toBeLessThan(16 * MiB);
    }
    // a run that no sample saw draws 'no samples'; one whose samples had no memory, 'no memory sample'
    if (!svg.includes('series-treeRssBytes')) expect(svg).toMatch(/no samples|no memory sample/);
  }, 30_000);

  it("the chart's title is the command as typed in a shell: its quoting kept", async () => {
    const svgFile = join(work, 'title.svg');
    const r = await cli(['-t', svgFile, '--', 'sh', '-c', 'echo "a b" > /dev/null', 'x y']);
    expect(r.code, r.stderr).toBe(0);
    const title = /<text id="chart-title"[^>]*>([^<]*)<\/text>/.exec(readFileSync(svgFile, 'utf8'))![1];
    // sh -c 'echo "a b" > /dev/null' 'x y', escaped for SVG
    expect(title).toBe('sh -c &#39;echo &quot;a b&quot; &gt; /dev/null&#39; &#39;x y&#39;');
    // and the library's own: measureCommand titles its timeline the same way
    const lib = await tm.measureCommand('sh', ['-c', "printf '%s' it's"], { timeline: true, stdio: 'ignore' });
    expect(lib.usage.timeline!.title).toBe(`sh -c 'printf '\\''%s'\\'' it'\\''s'`);
  }, 30_000);

  it('a run with a busy GPU (fake NVML at 100 %) draws its utilization at full height', async () => {
    const scenario = writeFakeNvmlScenario(
      work,
      `count=1\ndev0.name=Fake H100\ndev0.used=${4096 * MiB}\ndev0.util=100\ndev0.power_mw=300000\n`,
    );
    const svgFile = join(work, 'busy.svg');
    const r = await runCli(['-q', '-t', svgFile, '--', python, '-c', 'import time; time.sleep(0.6)'], {
      env: gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml(), FAKE_NVML_SCENARIO: scenario }),
      timeoutMs: 30_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const svg = readFileSync(svgFile, 'utf8');
    const axis = /<g id="axis-gpu"[^>]*data-max="100" data-y-zero="([\d.]+)" data-y-max="([\d.]+)"/.exec(svg);
    expect(axis, 'a GPU axis').not.toBeNull();
    const path = /<path class="series series-gpuUtilizationPercent" data-axis="gpu" d="([^"]+)"/.exec(svg)![1];
    const ys = [...path.matchAll(/[ML][\d.]+ ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(ys.length).toBeGreaterThan(3);
    // every reading was 100 %: the whole line lies at the top of the load panel
    for (const y of ys) expect(Math.abs(y - Number(axis![2]))).toBeLessThan(0.2);
    expect(svg).toContain('GPU utilization (%)');
  }, 30_000);

  it("the CSV's rss_bytes column is the command tree's RSS", async () => {
    const csvFile = join(work, 'z.csv');
    const r = await cli([
      '-i',
      '5',
      '-t',
      csvFile,
      '--',
      python,
      '-c',
      "b = b'\\x01' * (60 << 20)\nimport time; time.sleep(0.4)",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rows = readFileSync(csvFile, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(','));
    const rss = rows
      .map((c) => c[1])
      .filter((v) => v !== '')
      .map(Number);
    const tree = rows
      .map((c) => c[2])
      .filter((v) => v !== '')
      .map(Number);
    expect(rss.length).toBeGreaterThan(5);
    expect(rss).toEqual(tree); // the same figure: the command's, not taskmeter's
    expect(Math.max(...rss)).toBeGreaterThan(60 * MiB);
    expect(Math.min(...rss)).toBeLessThan(Math.max(...rss));
  }, 30_000);
});

const noChromium = requireSystemTool('chromium');
describe.skipIf(noChromium)(
  `the CLI timeline in headless Chromium${noChromium ? ` (skipped: ${noChromium})` : ''}`,
  () => {
    it('has chromium installed (scripts/system-deps.sh)', () => {
      expect(findSystemTool('chromium')).not.toBeNull();
    });

    it('a peak label never sits on a line: its box, as Chromium lays the text out, is clear of every memory line', async () => {
      const series = (n: number, f: (i: number) => number | null) => Array.from({ length: n }, (_, i) => f(i));
      const timeline = (tree: (number | null)[], gpu: (number | null)[]): tm.Timeline => ({
        startedAt: 0,
        sampleIntervalMs: 10,
        points: tree.map((v, i) => ({
          tMs: i * 10,
          rssBytes: null,
          treeRssBytes: v === null ? null : v * MiB,
          gpuProcessMemoryBytes: gpu[i] === null ? null : gpu[i]! * MiB,
          gpuUtilizationPercent: null,
          cpuPercent: 100,
        })),
      });
      const cases: [string, tm.Timeline][] = [
        // near-peak jitter all around the peak, and a second series just above it
        [
          'jagged',
          timeline(
            series(300, (i) => (i === 150 ? 1000 : 900 + ((i * 37) % 90))),
            series(300, (i) => 950 + ((i * 13) % 60)),
          ),
        ],
        // the peak is a plateau running to the right edge
        [
          'plateau',
          timeline(
            series(200, (i) => Math.min(i, 120) * 5),
            series(200, () => null),
          ),
        ],
        // the peak at the very first point, and at the very last
        [
          'first',
          timeline(
            series(100, (i) => 500 - i),
            series(100, () => null),
          ),
        ],
        [
          'last',
          timeline(
            series(100, (i) => i * 3),
            series(100, (i) => 300 - i),
          ),
        ],
        // both series peak at the same point
        [
          'same',
          timeline(
            series(100, (i) => (i === 50 ? 400 : 100)),
            series(100, (i) => (i === 50 ? 400 : 90)),
          ),
        ],
        // a sawtooth whose every tooth reaches the peak; the other series a steep zigzag through the label area
        [
          'sawtooth',
          timeline(
            series(400, (i) => 100 + (i % 20) * 10),
            series(400, (i) => (i % 2 ? 120 : 290)),
          ),
        ],
        // the other series zigzags through the whole band above the peak: the label must go elsewhere
        [
          'crossing',
          timeline(
            series(300, (i) => (i === 150 ? 500 : 300)),
            series(300, (i) => (i % 2 ? 420 : 900)),
          ),
        ],
        // one point
        ['single', timeline([256], [null])],
      ];
      const svgs = cases.map(([name, t]) => `<div data-case="${name}">${tm.renderTimeline(t)}</div>`).join('\n');
      const check = `
        const out = [];
        for (const div of document.querySelectorAll('div[data-case]')) {
          const svg = div.querySelector('svg');
          const lines = [...svg.querySelectorAll('path[data-axis="bytes"]')];
          const boxes = [];
          for (const t of svg.querySelectorAll('g.peak text')) {
            const b = t.getBBox();
            // the stroke is 2.2 px wide: its edge reaches 1.1 px past the line's centre
            const x1 = b.x - 1.2, y1 = b.y - 1.2, x2 = b.x + b.width + 1.2, y2 = b.y + b.height + 1.2;
            let hits = 0;
            for (const p of lines) {
              const len = p.getTotalLength();
              for (let l = 0; l <= len; l += 0.5) {
                const q = p.getPointAtLength(l);
                if (q.x >= x1 && q.x <= x2 && q.y >= y1 && q.y <= y2) hits++;
              }
            }
            const overlap = boxes.some((o) => o[0] < x2 && x1 < o[2] && o[1] < y2 && y1 < o[3]);
            const inside = b.x >= 0 && b.y >= 0 && b.x + b.width <= svg.width.baseVal.value;
            boxes.push([x1, y1, x2, y2]);
            out.push({ case: div.dataset.case, label: t.textContent, hits, overlap, inside });
          }
        }
        document.getElementById('result').textContent = JSON.stringify(out);`;
      const page = join(work, 'labels.html');
      writeFileSync(
        page,
        `<!doctype html><html><body>${svgs}<pre id="result">pending</pre><script>${check}</script></body></html>`,
      );
      const dom = await chromium(['--dump-dom', `file://${page}`]);
      expect(dom.code, dom.stderr).toBe(0);
      const json = /<pre id="result">([^<]*)<\/pre>/
        .exec(dom.stdout)![1]
        .replace(/&quot;/g, '"')
        .replace(/&amp;/g, '&');
      const results: { case: string; label: string; hits: number; overlap: boolean; inside: boolean }[] =
        JSON.parse(json);
      // every case has its labels (two series → two peaks, one for a single-series case)
      expect(results.length).toBe(13);
      for (const r of results) {
        expect(r.hits, `${r.case}: "${r.label}" lies on a line`).toBe(0);
        expect(r.overlap, `${r.case}: "${r.label}" covers another label`).toBe(false);
        expect(r.inside, `${r.case}: "${r.label}" is outside the chart`).toBe(true);
      }
    }, 120_000);

    it('renders the chart: elements in the DOM, a non-blank screenshot with the series drawn', async () => {
      const page = join(work, 'run.html');
      const cli = await runCli([
        '-q',
        '--timeline',
        page,
        '--',
        python,
        '-c',
        "import time\nb = b'\\x01' * (120 << 20)\ntime.sleep(0.4)\ndel b\ntime.sleep(0.3)",
      ]);
      expect(cli.code, cli.stderr).toBe(0);
      const dom = await chromium(['--dump-dom', `file://${page}`]);
      expect(dom.code, dom.stderr).toBe(0);
      expect(dom.stdout).toMatch(/<svg[^>]*role="img"/);
      expect(dom.stdout).toContain('class="series series-treeRssBytes"');
      expect(dom.stdout).toContain('class="peak peak-treeRssBytes"');
      expect(dom.stdout).toContain('id="legend"');
      expect(dom.stdout).toContain('memory (MiB)');
      const shot = join(work, 'shot.png');
      const r = await chromium(['--window-size=960,520', `--screenshot=${shot}`, `file://${page}`]);
      expect(r.code, r.stderr).toBe(0);
      const png = PNG.sync.read(readFileSync(shot));
      expect(png.width).toBe(960);
      let nonWhite = 0;
      let seriesBlue = 0;
      for (let i = 0; i < png.data.length; i += 4) {
        const [rr, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
        if (rr < 245 || g < 245 || b < 245) nonWhite++;
        // #1f6feb, the memory line, allowing for anti-aliasing
        if (Math.abs(rr - 31) < 40 && Math.abs(g - 111) < 40 && Math.abs(b - 235) < 30) seriesBlue++;
      }
      const total = png.width * png.height;
      expect(nonWhite / total).toBeGreaterThan(0.01);
      expect(seriesBlue).toBeGreaterThan(300);
    }, 120_000);
  },
);
