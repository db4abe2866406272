// The timeline: its rendering (SVG, HTML, CSV), and the page the CLI writes, opened in real headless Chromium
// (Debian's chromium, installed by scripts/system-deps.sh; never a downloaded browser).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { type ChildResult, findSystemTool, MiB, python3Path, requireSystemTool, run, runCli } from './helpers';
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
    expect(svg).toContain('CPU / GPU utilization (%)');
    expect(svg).toMatch(/class="series series-treeRssBytes"/);
    expect(svg).toMatch(/class="series series-gpuProcessMemoryBytes"/);
    expect(svg).toMatch(/class="series series-cpuPercent"/);
    expect(svg).toContain('peak 500 MiB at 1.20 s'); // the tree's peak, marked
    expect(svg).toContain('peak 2.00 GiB');
    expect(svg).toContain('id="legend"');
    expect(svg).toContain('train &lt;model&gt; &amp; &quot;eval&quot;'); // escaped
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
