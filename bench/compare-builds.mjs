// node bench/compare-builds.mjs <other checkout> — snapshot() and measureSync(() => 0) of this checkout's build and
// of another's (its dist/ and build/, e.g. a copy taken before a change: `git worktree add /tmp/before <commit> &&
// (cd /tmp/before && npm ci)`), side by side in one process, in interleaved rounds: on a shared, noisy machine the
// difference of two builds measured together is what can be trusted. Each addon loads from its own path, with its own
// sampler. Prints the median ns per call and every round's figure.
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
if (!process.argv[2]) throw new Error('usage: node bench/compare-builds.mjs <other checkout with dist/ and build/>');
const builds = [
  ['other', require(join(resolve(process.argv[2]), 'dist/index.js'))],
  ['this', require(join(here, '../dist/index.js'))],
];
const N = Number(process.env.BENCH_ITERS || 100000);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 9);
let sink = 0;
function ns(fn, n) {
  for (let i = 0; i < 1000; i++) fn();
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t) / n;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const res = {};
const add = (k, v) => {
  res[k] ??= [];
  res[k].push(v);
};
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, tm] of r % 2 ? [...builds].reverse() : builds) {
    add(
      `snapshot() ${name}`,
      ns(() => (sink += tm.snapshot().rssBytes), N),
    );
    add(
      `measureSync(() => 0) ${name}`,
      ns(() => (sink += tm.measureSync(() => 0).result), N / 10),
    );
  }
}
console.log('| case | median ns | rounds |\n|---|---:|---|');
for (const [k, v] of Object.entries(res))
  console.log(`| ${k} | ${median(v).toFixed(0)} | ${v.map((x) => x.toFixed(0)).join(' ')} |`);
if (sink === 0.5) console.log(sink);
