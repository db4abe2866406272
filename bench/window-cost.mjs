// What one window costs, this build beside another (BENCH_COMPARE_ROOT, a package root with dist/ and build/), in one
// process: per call in this thread's CPU time, which a loaded machine moves far less than wall time.
//   BENCH_COMPARE_ROOT=<root> node bench/window-cost.mjs
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = join(dirname(fileURLToPath(import.meta.url)), '..');
const builds = { 'this build': require(join(here, 'dist/index.js')) };
if (process.env.BENCH_COMPARE_ROOT)
  builds['compared build'] = require(join(process.env.BENCH_COMPARE_ROOT, 'dist/index.js'));
const { native } = require(join(here, 'dist/binding.js'));

function nsPerCall(fn, n) {
  for (let i = 0; i < 500; i++) fn();
  const t = native.threadCpuMs();
  for (let i = 0; i < n; i++) fn();
  return ((native.threadCpuMs() - t) * 1e6) / n;
}
const cases = {
  'measureSync(() => 0)': (tm) => () => tm.measureSync(() => 0),
  'new ResourceTracker().start().stop()': (tm) => () => new tm.ResourceTracker().start().stop(),
  'snapshot()': (tm) => () => tm.snapshot(),
};
const rounds = Number(process.env.BENCH_ROUNDS || 15);
const got = {};
for (let r = 0; r < rounds; r++) {
  for (const [c, make] of Object.entries(cases)) {
    for (const [b, tm] of Object.entries(builds)) {
      const key = `${c}|${b}`;
      got[key] ??= [];
      got[key].push(nsPerCall(make(tm), c === 'snapshot()' ? 50000 : 10000));
    }
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const names = Object.keys(builds);
console.log(
  `\nOne window's cost (thread CPU per call, median of ${rounds} rounds):\n\n| case | ${names.join(' | ')} |\n|---|${names.map(() => '---:').join('|')}|`,
);
for (const c of Object.keys(cases)) {
  console.log(`| ${c} | ${names.map((b) => `${median(got[`${c}|${b}`]).toFixed(0)} ns`).join(' | ')} |`);
}
