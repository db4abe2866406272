// The tree sampler's own cost at default settings (issue 9, item 6): `taskmeter -- <tree of N sleeping processes>`
// under GNU time. Tracker CPU = GNU time's user+system for the whole taskmeter run minus the command's own CPU (from
// taskmeter's record, exact: wait4). "Sampling" subtracts the start-up cost (the same figure for `taskmeter -- true`),
// leaving what tracking costs while the command runs. Each figure is the minimum of several runs: the machine is
// shared, and other load only ever adds. TREE_BENCH_SECONDS (default 10) and TREE_BENCH_RUNS (default 3) change it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'bin', 'taskmeter.js');
const seconds = Number(process.env.TREE_BENCH_SECONDS ?? 10);
const runs = Number(process.env.TREE_BENCH_RUNS ?? 3);
const sizes = (process.env.TREE_BENCH_SIZES ?? '1,50,200,1000').split(',').map(Number);

export function treeBench() {
  if (process.platform !== 'linux' || !existsSync('/usr/bin/time')) {
    console.log('\nTree sampler bench skipped: needs Linux and GNU time (/usr/bin/time)');
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'taskmeter-bench-tree-'));
  const once = (command) => {
    const timeFile = join(dir, 'time.txt');
    const rec = join(dir, 'record.json');
    execFileSync(
      '/usr/bin/time',
      ['-f', '%U %S %M', '-o', timeFile, process.execPath, cli, '-q', '-o', rec, '--', ...command],
      { stdio: 'ignore' },
    );
    const [u, s, maxKb] = readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
    const r = JSON.parse(readFileSync(rec, 'utf8'));
    return {
      trackerMs: (u + s - r.cpu_time_seconds) * 1000,
      wallMs: r.wall_time_seconds * 1000,
      rssKb: maxKb,
      interval: r.effective_sample_interval_ms,
      processes: r.processes,
      // PSS passes (tree.h): the interval between them, or whether one ran at all
      // (no figure: no pass read the tree near its peak, or none ran; record.tree_peak_pss_reason)
      pss: [
        r.tree_pss_sample_interval_ms != null
          ? `every ${(r.tree_pss_sample_interval_ms / 1000).toFixed(1)} s`
          : r.tree_peak_pss_bytes != null
            ? 'one pass'
            : null,
        r.tree_peak_pss_bytes == null ? 'no figure' : null,
      ]
        .filter(Boolean)
        .join(', '),
    };
  };
  const min = (xs, k) => Math.min(...xs.map((x) => x[k]));
  const startup = Array.from({ length: runs }, () => once(['true']));
  const startupMs = min(startup, 'trackerMs');
  const rows = [];
  for (const n of sizes) {
    const cmd =
      n === 1 ? ['sleep', String(seconds)] : ['sh', '-c', `for i in $(seq ${n}); do sleep ${seconds} & done; wait`];
    const rs = Array.from({ length: runs }, () => once(cmd));
    const best = rs.reduce((a, b) => (b.trackerMs < a.trackerMs ? b : a));
    rows.push({
      n,
      processes: best.processes,
      totalPct: (best.trackerMs / best.wallMs) * 100,
      samplingPct: (Math.max(0, best.trackerMs - startupMs) / best.wallMs) * 100,
      allTotals: rs.map((r) => ((r.trackerMs / r.wallMs) * 100).toFixed(2)),
      interval: best.interval,
      pss: best.pss,
      rssMb: min(rs, 'rssKb') / 1024,
    });
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(
    `\nTree sampler cost, default settings (\`taskmeter -- <N sleeping processes, ${seconds} s>\`, min of ${runs} runs; start-up, the tracker CPU of \`taskmeter -- true\`: ${startupMs.toFixed(0)} ms):\n`,
  );
  console.log(
    '| processes | tracker CPU, % of one core (total) | sampling only (start-up subtracted) | every run (total) | effective interval | PSS passes | taskmeter peak RSS | target (sampling) | met |',
  );
  console.log('|---:|---:|---:|---|---:|---|---:|---|---|');
  for (const r of rows) {
    const target = r.n === 1 ? 0.5 : r.n >= 1000 ? 2 : null;
    const met = target === null ? '—' : r.samplingPct <= target ? 'yes' : 'NO';
    console.log(
      `| ${r.n} (${r.processes} seen) | ${r.totalPct.toFixed(2)} % | ${r.samplingPct.toFixed(2)} % | ${r.allTotals.join(' / ')} | ${r.interval === null ? 'n/a' : `${r.interval.toFixed(1)} ms`} | ${r.pss} | ${r.rssMb.toFixed(1)} MiB | ${target === null ? '—' : `≤ ${target} %`} | ${met} |`,
    );
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) treeBench();
