// Child of bench/run.mjs, run with the fake NVML loaded (TASKMETER_NVML_LIBRARY, FAKE_NVML_SCENARIO).
import { renameSync, writeFileSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
// The package whose build is measured: this one, or BENCH_PACKAGE_ROOT (bench/gpu-windows.mjs BENCH_COMPARE_ROOT).
const root = process.env.BENCH_PACKAGE_ROOT || join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const tm = require(join(root, 'dist/index.js'));
const mode = process.argv[2];
const N = Number(process.env.BENCH_ITERS || 100000);
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
function nsPerCall(fn, n) {
  for (let i = 0; i < 1000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t0) / n;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
if (!tm.hasGpu) throw new Error('bench gpu-child: the fake GPU did not load: ' + tm.gpuInfo().reason);
let sink = 0;
if (mode === 'costs') {
  const snap = [],
    meas = [];
  for (let r = 0; r < 7; r++) {
    snap.push(
      nsPerCall(() => {
        sink += tm.snapshot().gpus.length;
      }, N),
    );
    meas.push(
      nsPerCall(() => {
        sink += tm.measureSync(() => 0).usage.gpus.length;
      }, N / 10),
    );
  }
  console.log(
    JSON.stringify({ gpus: tm.snapshot().gpus.length, snapshotNs: median(snap), measureSyncNs: median(meas) }),
  );
} else if (mode === 'sampler-cpu') {
  // CPU time of taskmeter's own threads (named taskmeter-rss / taskmeter-gpu) while a window is open, per second.
  const { readdirSync } = await import('node:fs');
  const hz = 100; // USER_HZ on Linux
  const threadCpu = () => {
    const out = {};
    for (const tid of readdirSync('/proc/self/task')) {
      let comm;
      try {
        comm = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      } catch {
        continue;
      }
      if (!comm.startsWith('taskmeter-')) continue;
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[comm] = ((Number(f[11]) + Number(f[12])) / hz) * 1000; // utime + stime, ms
    }
    return out;
  };
  const interval = Number(process.argv[3] || 10);
  const t = new tm.ResourceTracker({ sampleIntervalMs: interval }).start();
  const before = threadCpu();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 3000));
  const after = threadCpu();
  const u = t.stop();
  const secs = (performance.now() - t0) / 1000;
  const perSec = Object.fromEntries(Object.keys(after).map((k) => [k, (after[k] - (before[k] ?? 0)) / secs]));
  console.log(
    JSON.stringify({
      interval,
      perSecMs: perSec,
      gpuIntervalMs: u.gpuSampleIntervalMs,
      samples: u.samples,
      gpuSamples: u.gpuSamples,
    }),
  );
} else if (mode === 'exporters') {
  // JS-thread cost of one collection with the fake GPU loaded: our OpenTelemetry batch callback alone and the whole
  // SDK collect(), and a whole prom-client scrape of taskmeter's collector (registry.metrics()).
  const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics');
  const { registerTaskmeterMetrics } = require(join(root, 'dist/exporters/otel.js'));
  const prom = require('prom-client');
  const { createTaskmeterCollector } = require(join(root, 'dist/exporters/prometheus.js'));
  class Reader extends MetricReader {
    async onForceFlush() {}
    async onShutdown() {}
  }
  const reader = new Reader();
  const provider = new MeterProvider({ readers: [reader] });
  let callback;
  const meter = provider.getMeter('bench');
  const orig = meter.addBatchObservableCallback.bind(meter);
  meter.addBatchObservableCallback = (cb, obs) => {
    callback = cb;
    return orig(cb, obs);
  };
  registerTaskmeterMetrics(meter);
  const fakeResult = { observe: () => {} };
  const registry = new prom.Registry();
  createTaskmeterCollector({ registry });
  sleep(100);
  const time = async (fn, n) => {
    for (let i = 0; i < 50; i++) await fn();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    return Number(process.hrtime.bigint() - t0) / n / 1000;
  };
  const ours = registry.getMetricsAsArray();
  const collectAll = () => Promise.all(ours.map((m) => m.get()));
  const cb = [],
    sdk = [],
    scrape = [],
    promCollect = [];
  for (let r = 0; r < 7; r++) {
    cb.push(await time(() => callback(fakeResult), 2000));
    sdk.push(await time(() => reader.collect(), 300));
    promCollect.push(await time(collectAll, 300));
    scrape.push(await time(() => registry.metrics(), 300));
  }
  console.log(
    JSON.stringify({
      callbackUs: median(cb),
      otelCollectUs: median(sdk),
      promCollectUs: median(promCollect),
      promScrapeUs: median(scrape),
      gpus: tm.snapshot().gpus.length,
    }),
  );
  process.exit(0);
} else if (mode === 'h200') {
  // The GPU thread's own CPU (its thread clock: /proc/self/task/<tid>/schedstat, ns) while a tracker is open at
  // default settings, on the fake's H200 profile (per-call costs burning CPU; the scenario names the GPU count).
  // What the first seconds cost (the slow first energy calls, costs not yet known) is measured apart from the
  // steady state that follows.
  const { readdirSync } = await import('node:fs');
  const gpuTid = () => {
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'taskmeter-gpu') return tid;
      } catch {}
    }
    throw new Error('no taskmeter-gpu thread');
  };
  const tid = gpuTid();
  const cpuMs = () => Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  const secs = Number(process.argv[3] || 10);
  const c0 = cpuMs();
  const t0 = performance.now();
  const t = new tm.ResourceTracker().start(); // default settings: sampleIntervalMs 10
  await new Promise((r) => setTimeout(r, 3000));
  const c1 = cpuMs();
  const t1 = performance.now();
  await new Promise((r) => setTimeout(r, secs * 1000));
  const c2 = cpuMs();
  const t2 = performance.now();
  const u = t.stop();
  console.log(
    JSON.stringify({
      gpus: u.gpus.length,
      firstMsPerSec: (c1 - c0) / ((t1 - t0) / 1000),
      steadyMsPerSec: (c2 - c1) / ((t2 - t1) / 1000),
      deviceMs: u.gpuSampleIntervalMs,
      energyMs: u.gpuEnergyIntervalMs,
      putilMs: u.gpuProcessUtilizationIntervalMs,
      gpuSamples: u.gpuSamples,
      wallMs: u.wallTimeMs,
      note: u.gpuSamplingNote,
    }),
  );
  process.exit(0);
} else if (mode === 'windows') {
  // Many open windows: `open` windows at 10 ms, each counting this process ('self') or a pid of its own ('pids'),
  // beside the GPU thread. Its CPU (thread clock) per second while they stay open, then what a measureSync(() => 0)
  // costs the JS thread with them open (median, p99 and max of single calls: it waits while the GPU thread holds the
  // sampler's lock to apply a reading to the windows).
  const { native } = require(join(root, 'dist/binding.js'));
  const { readdirSync } = await import('node:fs');
  let tid = null;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'taskmeter-gpu') tid = t;
    } catch {}
  }
  if (tid === null) throw new Error('no taskmeter-gpu thread');
  const cpuMs = () => Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  const open = Number(process.argv[3] || 0);
  const kind = process.argv[4] || 'self';
  const ids = [];
  for (let i = 0; i < open; i++) {
    const id = native.windowOpen(10);
    if (kind === 'pids') native.windowSetPids(id, [100000 + i]);
    ids.push(id);
  }
  await new Promise((r) => setTimeout(r, 2000)); // the costs measured, the schedule settled
  const c0 = cpuMs();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 4000));
  const gpuMsPerSec = (cpuMs() - c0) / ((performance.now() - t0) / 1000);
  const probe = tm.measureSync(() => sleep(50)).usage; // the schedule's periods as they stand
  const times = [];
  const end = performance.now() + 2000;
  while (performance.now() < end) {
    const a = process.hrtime.bigint();
    sink += tm.measureSync(() => 0).usage.gpus.length;
    times.push(Number(process.hrtime.bigint() - a));
  }
  times.sort((a, b) => a - b);
  const out = new Float64Array(native.WINDOW_SLOTS + 16 * native.GPU_WINDOW_SLOTS);
  for (const id of ids) native.windowClose(id, out);
  console.log(
    JSON.stringify({
      open,
      kind,
      gpuMsPerSec,
      deviceMs: probe.gpuSampleIntervalMs,
      putilMs: probe.gpuProcessUtilizationIntervalMs,
      measureSyncMedianNs: times[Math.floor(times.length / 2)],
      measureSyncP99Ns: times[Math.floor(times.length * 0.99)],
      measureSyncMaxNs: times[times.length - 1],
      calls: times.length,
    }),
  );
  process.exit(0);
} else if (mode === 'hang') {
  const scenario = process.env.FAKE_NVML_SCENARIO;
  const base = readFileSync(scenario, 'utf8');
  const tracker = new tm.ResourceTracker().start(); // keeps the GPU thread reading
  sleep(200);
  writeFileSync(scenario + '.tmp', base + '\ndelay.nvmlDeviceGetComputeRunningProcesses_v3=3000\n');
  renameSync(scenario + '.tmp', scenario);
  sleep(1300); // the GPU thread is now inside the 3 s call, past the 1 s watchdog
  const times = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    tm.measureSync(() => 0);
    times.push(performance.now() - t0);
  }
  const u = tracker.stop();
  console.log(
    JSON.stringify({
      measureSyncMaxMs: Math.max(...times),
      measureSyncMedianMs: median(times),
      stale: u.gpuStale,
      exitAt: Date.now(),
    }),
  );
  process.exit(0);
}
if (sink === 0.5) console.log(sink);
