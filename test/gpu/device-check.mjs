// The real-GPU check: run with node on a machine with an NVIDIA driver, from an unpacked `npm pack` of the built
// package with its runtime dependencies (so that `import('taskmeter')` resolves). Every figure is
// compared with nvidia-smi's own view in the same run. Writes $OUT/device-check.json and prints a summary.
// Not part of `npm test` (it needs a GPU, PyTorch and nvidia-smi); without a GPU it says so and exits 0.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const t0 = performance.now();
const tm = await import('taskmeter');
const importMs = performance.now() - t0;
const out = { date: new Date().toISOString(), importMs, hasGpu: tm.hasGpu, info: tm.gpuInfo() };
const smi = (args) => {
  try {
    return execFileSync('nvidia-smi', args, { encoding: 'utf8', timeout: 30_000 }).trim();
  } catch (e) {
    return `error: ${e.message}`;
  }
};
const save = () => {
  if (process.env.OUT) writeFileSync(join(process.env.OUT, 'device-check.json'), JSON.stringify(out, null, 2));
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

out.smiGpus = smi(['--query-gpu=index,uuid,name,driver_version,memory.total,memory.used,power.draw', '--format=csv,noheader,nounits']);
if (!tm.hasGpu) {
  console.log(`no GPU: ${out.info.reason}`);
  save();
  process.exit(0);
}

// 1. Devices against nvidia-smi.
const smiRows = out.smiGpus.split('\n').map((l) => l.split(',').map((s) => s.trim()));
out.devices = out.info.devices.map((d) => {
  const row = smiRows.find((r) => r[1] === d.uuid);
  return { ours: d, smi: row ?? null, nameMatches: row?.[2] === d.name, totalMiBOurs: d.memoryTotalBytes / 2 ** 20, totalMiBSmi: Number(row?.[4]) };
});

// 2. Costs on the JS thread with the GPU loaded.
for (let i = 0; i < 2000; i++) tm.snapshot();
let t = process.hrtime.bigint();
for (let i = 0; i < 20000; i++) tm.snapshot();
out.snapshotNs = Number(process.hrtime.bigint() - t) / 20000;
t = process.hrtime.bigint();
for (let i = 0; i < 5000; i++) tm.measureSync(() => 0);
out.measureSyncNs = Number(process.hrtime.bigint() - t) / 5000;

// 3. A PyTorch process holding 4 GiB, measured with measureCommand, against nvidia-smi's process list mid-run.
const hold = "import torch,time; x=torch.empty(4<<30,dtype=torch.uint8,device='cuda'); x.fill_(1); torch.cuda.synchronize(); print('ready',flush=True); time.sleep(10)";
let pid = 0;
const run = tm.measureCommand('python3', ['-c', hold], { onSpawn: (p) => (pid = p), sampleIntervalMs: 50 });
await sleep(7000);
out.smiApps = smi(['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']);
out.midSnapshot = tm.snapshot().gpus;
const held = await run;
out.hold = {
  pid,
  exitCode: held.exitCode,
  smiUsedMiB: Number((out.smiApps.split('\n').map((l) => l.split(',').map((s) => s.trim())).find((r) => Number(r[0]) === pid) ?? [])[1]),
  oursPeakMiB: held.usage.gpus.map((g) => (g.processMemoryPeakBytes ?? NaN) / 2 ** 20),
  reason: held.usage.gpus.map((g) => g.processMemoryReason),
  gpuSampleIntervalMs: held.usage.gpuSampleIntervalMs,
  record: tm.toRecord(held.usage),
};

// 4. Energy of a window where PyTorch keeps the GPU busy, against power × time from nvidia-smi samples.
const busy = "import torch,time; a=torch.randn(8192,8192,device='cuda'); t=time.time()\nwhile time.time()-t<8: a=a@a; a/=a.norm()\ntorch.cuda.synchronize()";
const powers = [];
const sampler = setInterval(() => {
  powers.push(Number(smi(['--query-gpu=power.draw', '--format=csv,noheader,nounits']).split('\n')[0]));
}, 500);
const b = await tm.measureCommand('python3', ['-c', busy], { sampleIntervalMs: 100 });
clearInterval(sampler);
const meanW = powers.filter(Number.isFinite).reduce((a, x) => a + x, 0) / Math.max(1, powers.filter(Number.isFinite).length);
out.energy = {
  wallS: b.usage.wallTimeMs / 1000,
  oursJ: b.usage.gpus.map((g) => g.energyJoules),
  smiMeanPowerW: meanW,
  smiPowerTimesWallJ: meanW * (b.usage.wallTimeMs / 1000),
  utilizationAvg: b.usage.gpus.map((g) => g.utilizationAvgPercent),
};

// 5. The sampler's own CPU while a window is open (threads taskmeter-rss / taskmeter-gpu).
const threadCpu = () => {
  const r = {};
  for (const line of execFileSync('sh', ['-c', `for t in /proc/${process.pid}/task/*; do echo "$(cat $t/comm) $(cut -d' ' -f14,15 $t/stat)"; done`], { encoding: 'utf8' }).trim().split('\n')) {
    const [comm, u, s] = line.split(' ');
    if (comm.startsWith('taskmeter-')) r[comm] = (Number(u) + Number(s)) * 10;
  }
  return r;
};
const tr = new tm.ResourceTracker().start();
const c0 = threadCpu();
await sleep(5000);
const c1 = threadCpu();
out.samplerCpuMsPerS = Object.fromEntries(Object.keys(c1).map((k) => [k, (c1[k] - (c0[k] ?? 0)) / 5]));
out.samplerGpuIntervalMs = tr.stop().gpuSampleIntervalMs;

save();
console.log(JSON.stringify({ importMs, snapshotNs: out.snapshotNs, measureSyncNs: out.measureSyncNs, devices: out.devices, hold: { ...out.hold, record: undefined }, smiApps: out.smiApps, energy: out.energy, sampler: out.samplerCpuMsPerS, gpuIntervalMs: out.samplerGpuIntervalMs }, null, 1));
