// One case of the sampler self-cost bench (bench/run.mjs runs it in a fresh process per interval, without a GPU):
//   node bench/sampler-cpu.mjs <intervalMs> <windowMs>
// Measures an idle window (an await of windowMs) and prints what taskmeter's own threads used and what the window
// reports as the task's CPU.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tm = require('../dist/index.js');
const { native } = require('../dist/binding.js');
const interval = Number(process.argv[2] || 10);
const windowMs = Number(process.argv[3] || 3000);

const own0 = native.samplerState().ownCpuMs;
const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, windowMs)), { sampleIntervalMs: interval });
const own1 = native.samplerState().ownCpuMs;
console.log(
  JSON.stringify({
    interval,
    windowMs: usage.wallTimeMs,
    samples: usage.samples,
    samplerCpuMsPerSec: (usage.samplerCpuMs / usage.wallTimeMs) * 1000,
    samplerUsPerSample: (usage.samplerCpuMs * 1000) / Math.max(1, usage.samples),
    ownCpuMs: own1 - own0,
    windowCpuTimeMs: usage.cpuTimeMs,
    windowThreadCpuMs: usage.threadCpuMs,
  }),
);
