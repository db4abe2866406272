// Child of bench/run.mjs: snapshot()'s and measureSync()'s cost in a fresh process without a GPU
// (TASKMETER_DISABLE_GPU=1), beside gpu-child.mjs's `costs` with the fake NVML: what the GPU adds to them.
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const tm = require('../dist/index.js');
const N = Number(process.env.BENCH_ITERS || 100000);
let sink = 0;
const nsPerCall = (fn, n) => {
  for (let i = 0; i < 1000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t0) / n;
};
const snap = [];
const meas = [];
for (let r = 0; r < 7; r++) {
  snap.push(nsPerCall(() => (sink += tm.snapshot().rssBytes), N));
  meas.push(nsPerCall(() => (sink += tm.measureSync(() => 0).usage.gpus.length), N / 10));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[3];
console.log(
  JSON.stringify({
    snapshotNs: median(snap),
    measureSyncNs: median(meas),
    gpus: tm.snapshot().gpus.length,
    sink: sink > 0,
  }),
);
