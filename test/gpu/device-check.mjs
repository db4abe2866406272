// The real-GPU check: run on a machine with an NVIDIA driver, PyTorch (python3 -c "import torch") and nvidia-smi,
// from an installed copy of the package (`npm pack`, install the tarball next to this file, `node device-check.mjs`).
// Every figure is compared with nvidia-smi's own view in the same run; where one side has no value the comparison
// says "not compared" instead of a verdict. Writes $OUT/device-check.json (when OUT is set) and prints a summary.
// Not part of `npm test` (it needs a GPU); without a GPU it says so and exits 0.
import { execFileSync, spawn } from 'node:child_process';
import { readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// Detection can take 1–3 s per GPU with persistence mode off: let the import wait for it (up to 60 s) instead of
// reporting "no GPU" after the default 1 s.
process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS ??= '60000';
const t0 = performance.now();
const tm = await import('taskmeter');
const importMs = performance.now() - t0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let waited = 0; tm.gpuInfo().pending && waited < 60_000; waited += 100) await sleep(100);

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
/** A comparison: both values, their ratio, or "not compared" when a side has none. */
const compare = (ours, theirs, tolerance) => {
  const ok = (v) => typeof v === 'number' && Number.isFinite(v);
  if (!ok(ours) || !ok(theirs)) return { ours: ours ?? null, theirs: theirs ?? null, verdict: 'not compared' };
  const ratio = theirs === 0 ? (ours === 0 ? 1 : Infinity) : ours / theirs;
  return { ours, theirs, ratio, verdict: Math.abs(ratio - 1) <= tolerance ? 'agrees' : 'DIFFERS' };
};
const csv = (text) =>
  text
    .split('\n')
    .filter((l) => l && !l.startsWith('error'))
    .map((l) => l.split(',').map((s) => s.trim()));

// 0. The host: driver, persistence mode, MIG, accounting mode, PID namespace.
out.smiGpus = smi([
  '--query-gpu=index,uuid,name,driver_version,memory.total,memory.used,power.draw,persistence_mode,mig.mode.current,accounting.mode',
  '--format=csv,noheader,nounits',
]);
out.smiList = smi(['-L']); // lists MIG devices (MIG-… UUIDs) under their GPUs
let pidNs = null;
try {
  pidNs = readlinkSync('/proc/self/ns/pid');
} catch {}
out.host = {
  driverOurs: out.info.driverVersion,
  driverSmi: csv(out.smiGpus)[0]?.[3] ?? null,
  persistenceMode: csv(out.smiGpus).map((r) => r[7]),
  migMode: csv(out.smiGpus).map((r) => r[8]),
  accountingModeSmi: csv(out.smiGpus).map((r) => r[9]),
  accountingModeOurs: out.info.devices.map((d) => d.accountingMode),
  pidNamespace: pidNs,
  pidMatch: out.info.pidMatch,
  deviceOrder: out.info.deviceOrder,
  deviceOrderCertain: out.info.deviceOrderCertain,
  deviceOrderNote: out.info.deviceOrderNote,
  migDevicesOurs: out.info.devices
    .filter((d) => d.mig)
    .map((d) => ({ uuid: d.uuid, ...d.mig, memoryTotalBytes: d.memoryTotalBytes })),
};
if (!tm.hasGpu) {
  console.log(`no GPU: ${out.info.reason}`);
  save();
  process.exit(0);
}

// 1. Devices against nvidia-smi (whole GPUs by UUID; MIG slices against `nvidia-smi -L`).
const smiRows = csv(out.smiGpus);
out.devices = out.info.devices.map((d) => {
  if (d.mig) return { ours: d, smiListed: out.smiList.includes(d.uuid) };
  const row = smiRows.find((r) => r[1] === d.uuid);
  return {
    ours: d,
    nameMatches: row ? row[2] === d.name : 'not compared',
    totalMiB: compare(d.memoryTotalBytes / 2 ** 20, Number(row?.[4]), 0.01),
  };
});

// 2. Costs on the JS thread with the GPU loaded.
for (let i = 0; i < 2000; i++) tm.snapshot();
let t = process.hrtime.bigint();
for (let i = 0; i < 20000; i++) tm.snapshot();
out.snapshotNs = Number(process.hrtime.bigint() - t) / 20000;
t = process.hrtime.bigint();
for (let i = 0; i < 5000; i++) tm.measureSync(() => 0);
out.measureSyncNs = Number(process.hrtime.bigint() - t) / 5000;

/** Starts a python3 -c program and resolves once it prints "ready" (no fixed sleep). */
function startReady(code) {
  const child = spawn('python3', ['-c', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => l.trim() === 'ready' && resolve());
    child.on('exit', (c) => reject(new Error(`python3 exited with ${c} before "ready"`)));
    setTimeout(() => reject(new Error('no "ready" line within 120 s')), 120_000).unref();
  });
  return { child, ready };
}

// 3. Two CUDA processes at once (so the second process-list entry, and the entry stride, is exercised), holding 4 and
//    2 GiB; each tracked with trackProcess and compared with nvidia-smi's process list.
const hold = (gib) =>
  `import torch,time; x=torch.empty(${gib}<<30,dtype=torch.uint8,device='cuda'); x.fill_(1); torch.cuda.synchronize(); print('ready',flush=True); time.sleep(6)`;
const holders = [startReady(hold(4)), startReady(hold(2))];
const trackers = holders.map((h) => tm.trackProcess(h.child.pid, { sampleIntervalMs: 50 }));
await Promise.all(holders.map((h) => h.ready));
await sleep(1000);
out.smiApps = smi(['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']);
out.midSnapshot = tm.snapshot().gpus;
const held = await Promise.all(trackers.map((tr) => tr.exited));
out.hold = held.map((u, i) => {
  const pid = holders[i].child.pid;
  const smiMiB = Number(csv(out.smiApps).find((r) => Number(r[0]) === pid)?.[1]);
  const oursMiB = u.gpus.map((g) => g.processMemoryPeakBytes).find((v) => v !== null);
  return {
    pid,
    peakMiB: compare(oursMiB === undefined ? null : oursMiB / 2 ** 20, smiMiB, 0.05),
    peakSource: u.gpus.map((g) => g.processMemoryPeakSource),
    reasons: u.gpus.map((g) => g.processMemoryReason),
    gpuSampleIntervalMs: u.gpuSampleIntervalMs,
    gpuProcessSampleIntervalMs: u.gpuProcessSampleIntervalMs,
    // what one round of process-list calls costs on this driver: the interval is 125 × that cost when cost-bound
    processListCostMsEstimate: u.gpuProcessSampleIntervalMs === null ? null : u.gpuProcessSampleIntervalMs / 125,
  };
});

// 4. A busy window: energy against nvidia-smi's power sampled every 100 ms (`-lms 100`, read asynchronously), and
//    this process tree's SM utilization against `nvidia-smi pmon`.
const busy =
  "import torch,time\na=torch.randn(8192,8192,device='cuda'); torch.cuda.synchronize(); print('ready',flush=True); t=time.time()\nwhile time.time()-t<8: a=a@a; a/=a.norm()\ntorch.cuda.synchronize()";
const powers = [];
const smiPower = spawn('nvidia-smi', ['--query-gpu=power.draw', '--format=csv,noheader,nounits', '-lms', '100'], {
  stdio: ['ignore', 'pipe', 'ignore'],
});
createInterface({ input: smiPower.stdout }).on('line', (l) => {
  const w = Number(l.split(',')[0]);
  if (Number.isFinite(w)) powers.push(w);
});
const pmonLines = [];
const pmon = spawn('nvidia-smi', ['pmon', '-s', 'u', '-d', '1'], { stdio: ['ignore', 'pipe', 'ignore'] });
createInterface({ input: pmon.stdout }).on('line', (l) => pmonLines.push(l));
const worker = startReady(busy);
const wt = tm.trackProcess(worker.child.pid, { sampleIntervalMs: 100 });
await worker.ready;
const b = await wt.exited;
smiPower.kill();
pmon.kill();
const meanW = powers.length ? powers.reduce((a, x) => a + x, 0) / powers.length : null;
// pmon columns: gpu pid type sm mem enc dec command; "-" where no sample
const pmonSm = pmonLines
  .filter((l) => !l.startsWith('#'))
  .map((l) => l.trim().split(/\s+/))
  .filter((f) => Number(f[1]) === worker.child.pid && f[3] !== '-')
  .map((f) => Number(f[3]));
out.busy = {
  wallS: b.wallTimeMs / 1000,
  energyJ: compare(b.gpuEnergyJoules, meanW === null ? null : meanW * (b.wallTimeMs / 1000), 0.15),
  smiPowerSamples: powers.length,
  powerReported: b.gpus.map((g) => g.powerSource),
  utilizationAvg: b.gpus.map((g) => g.utilizationAvgPercent),
  processSmPercent: compare(
    b.gpuProcessUtilizationPercent,
    pmonSm.length ? pmonSm.reduce((a, x) => a + x, 0) / pmonSm.length : null,
    0.2,
  ),
  processUtilizationReason: b.gpus.map((g) => g.processUtilizationReason),
};

// 5. The sampler's own CPU while a window is open (threads taskmeter-rss / taskmeter-gpu).
const threadCpu = () => {
  const r = {};
  for (const line of execFileSync(
    'sh',
    ['-c', `for t in /proc/${process.pid}/task/*; do echo "$(cat $t/comm) $(cut -d' ' -f14,15 $t/stat)"; done`],
    { encoding: 'utf8' },
  )
    .trim()
    .split('\n')) {
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
const idle = tr.stop();
out.samplerGpuIntervalMs = idle.gpuSampleIntervalMs;
out.samplerGpuProcessIntervalMs = idle.gpuProcessSampleIntervalMs;

save();
console.log(
  JSON.stringify(
    {
      importMs,
      host: out.host,
      snapshotNs: out.snapshotNs,
      measureSyncNs: out.measureSyncNs,
      devices: out.devices,
      hold: out.hold,
      busy: out.busy,
      sampler: out.samplerCpuMsPerS,
    },
    null,
    1,
  ),
);
process.exit(0);
