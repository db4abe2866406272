// The real-GPU check (issue 16): run on a machine with an NVIDIA driver, python3 with PyTorch and nvidia-ml-py
// (pynvml), and nvidia-smi, from the packed package (`bash .device/run.sh`, see GPU-CHECKS in the project notes) or
// from the repository root (`node test/gpu/device-check.mjs`). Not part of `npm test` on a GPU machine; on the fake
// NVML it is dry-run by test/gpu-device-check.test.ts (DEVICE_CHECK_QUICK=1, stand-ins for torch, pynvml and
// nvidia-smi in test/gpu/standin/).
//
// What it measures, each figure beside the driver's own view in the same run (pynvml, nvidia-smi):
//   import       `node -e "require('taskmeter')"` at default settings (exit never waits for detection) and how long
//                detection takes
//   host         gpuInfo() against nvidia-smi (devices, totals, driver, persistence, MIG, accounting), PID namespace
//   nvmlCosts    per-call cost of every NVML call taskmeter makes (pynvml, thread CPU and wall, median/p90/max of N
//                calls) on an idle and a busy GPU; the first call after nvmlInit; how often each value changes
//                (update cadence); how far back the driver keeps per-process utilization samples
//   gpuThread    taskmeter's GPU thread CPU per second (its thread clock) at default settings, idle and busy GPU,
//                with the reading periods it chose
//   shortJobs    GPU jobs holding 1 GiB for 0.2 s, 1 s and 3 s, measured as the CLI does (default settings): is the
//                memory caught, against what the job itself read through pynvml while holding it
//   backToBack   a job holding 2 GiB, then one holding 256 MiB: the second must not show the first's memory
//   energy       a 2 s and a 100 ms busy window: taskmeter against pynvml's energy counter read inside the child
//                and the child's own integration of instant power
//   smUtil       per-process SM utilization of a busy job against `nvidia-smi pmon` (the mean of its samples)
//   crossCheck   two CUDA processes (4 and 2 GiB): per-pid memory, memory info v2, the process lists, accounting
//                and MIG mode through pynvml beside taskmeter's view; snapshot() and measureSync() costs
// Files under $OUT (at most four): device-check.json (everything), nvml-costs.json (the pynvml measurements),
// pmon.txt (nvidia-smi pmon's lines), smi.txt (nvidia-smi's view). Prints a summary. Every section records its
// error and the check goes on; a section that would not finish before the deadline (DEVICE_CHECK_DEADLINE_S,
// default 270 s: run.sh stops the check at 420 s) is skipped with that reason.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

const QUICK = process.env.DEVICE_CHECK_QUICK === '1'; // the dry run on the fake: shorter waits, fewer calls
const PY = process.env.DEVICE_CHECK_PYTHON || 'python3';
const SMI = process.env.DEVICE_CHECK_NVIDIA_SMI || 'nvidia-smi';
const OUT = process.env.OUT || null;
const DEADLINE_S = Number(process.env.DEVICE_CHECK_DEADLINE_S || 270);
const startedAt = performance.now();
const elapsedS = () => (performance.now() - startedAt) / 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const q = (full, quick) => (QUICK ? quick : full);

// Detection can take seconds per GPU without persistence mode: this process waits for it (the `import` section
// measures the default behaviour in child processes).
process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS ??= '60000';
const t0 = performance.now();
const tm = await import('taskmeter');
const importMs = performance.now() - t0;
for (let waited = 0; tm.gpuInfo().pending && waited < 60_000; waited += 100) await sleep(100);
const pkgRoot = dirname(dirname(createRequire(import.meta.url).resolve('taskmeter')));

const out = { date: new Date().toISOString(), quick: QUICK, importMs, hasGpu: tm.hasGpu, sections: {} };
const files = { smi: [], pmon: [] };
const save = () => {
  if (!OUT) return;
  try {
    writeFileSync(join(OUT, 'device-check.json'), JSON.stringify(out, null, 1));
    if (out.nvmlCosts) writeFileSync(join(OUT, 'nvml-costs.json'), JSON.stringify(out.nvmlCosts, null, 1));
    writeFileSync(join(OUT, 'pmon.txt'), files.pmon.slice(0, 2000).join('\n') + '\n');
    writeFileSync(join(OUT, 'smi.txt'), files.smi.join('\n').slice(0, 200_000) + '\n');
  } catch (e) {
    console.error(`could not write to OUT: ${e.message}`);
  }
};

/** Runs one part of the check: its result, or its error; skipped when it would pass the deadline. */
async function section(name, budgetS, fn) {
  if (elapsedS() + budgetS > DEADLINE_S) {
    out.sections[name] = { skipped: `not started: ${elapsedS().toFixed(0)} s gone, it needs ~${budgetS} s` };
    return;
  }
  const s0 = performance.now();
  try {
    out.sections[name] = { ...(await fn()), seconds: (performance.now() - s0) / 1000 };
  } catch (e) {
    out.sections[name] = { error: String(e?.stack ?? e), seconds: (performance.now() - s0) / 1000 };
  }
  save();
}

const smi = (args, timeoutMs = 30_000) => {
  try {
    const text = execFileSync(SMI, args, { encoding: 'utf8', timeout: timeoutMs }).trim();
    files.smi.push(`$ nvidia-smi ${args.join(' ')}`, text);
    return text;
  } catch (e) {
    files.smi.push(`$ nvidia-smi ${args.join(' ')}`, `error: ${e.message}`);
    return null;
  }
};
const csv = (text) =>
  (text ?? '')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => l.split(',').map((s) => s.trim()));
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
/** Both values and their ratio; "not compared" when a side has none. */
const compare = (ours, theirs, tolerance) => {
  if (num(ours) === null || num(theirs) === null)
    return { ours: ours ?? null, theirs: theirs ?? null, verdict: 'not compared' };
  const ratio = theirs === 0 ? (ours === 0 ? 1 : Infinity) : ours / theirs;
  return { ours, theirs, ratio, verdict: Math.abs(ratio - 1) <= tolerance ? 'agrees' : 'DIFFERS' };
};
const MiB = 2 ** 20;

// The GPU the jobs use: taskmeter's first device (a whole GPU or a MIG slice); jobs see it through its UUID.
const dev0 = tm.gpuInfo().devices[0] ?? null;
const childEnv = (extra = {}) => ({ ...process.env, ...(dev0 ? { CUDA_VISIBLE_DEVICES: dev0.uuid } : {}), ...extra });

// --- Python programs (inline: the packed check is this one file) ---

// pynvml measurements: `costs <label> <n>`, `first`, `cadence <seconds>`, `retention`, `view <pids,...>`. Prints one
// JSON line. Each call is timed with the thread's CPU clock and the wall clock; a call that fails records its error.
const PY_NVML = `
import json, os, sys, time
import pynvml as N
idx = int(os.environ.get('CHECK_NVML_INDEX', '0'))
def ms(ns): return ns / 1e6
def timed(fn):
    c0 = time.thread_time_ns(); w0 = time.perf_counter_ns()
    try:
        r = fn(); err = None
    except N.NVMLError as e:
        r = None; err = str(e)
    except Exception as e:
        r = None; err = type(e).__name__ + ': ' + str(e)
    return r, ms(time.thread_time_ns() - c0), ms(time.perf_counter_ns() - w0), err
def stats(xs):
    xs = sorted(xs)
    if not xs: return None
    return {'median': xs[len(xs)//2], 'p90': xs[int(len(xs)*0.9)], 'max': xs[-1], 'n': len(xs)}
FI_POWER_INSTANT = getattr(N, 'NVML_FI_DEV_POWER_INSTANT', 186)
def calls(h):
    c = {
        'nvmlDeviceGetMemoryInfo': lambda: N.nvmlDeviceGetMemoryInfo(h),
        'nvmlDeviceGetMemoryInfo_v2': lambda: N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2),
        'nvmlDeviceGetUtilizationRates': lambda: N.nvmlDeviceGetUtilizationRates(h),
        'nvmlDeviceGetPowerUsage': lambda: N.nvmlDeviceGetPowerUsage(h),
        'nvmlDeviceGetFieldValues(POWER_INSTANT)': lambda: N.nvmlDeviceGetFieldValues(h, [FI_POWER_INSTANT]),
        'nvmlDeviceGetComputeRunningProcesses': lambda: N.nvmlDeviceGetComputeRunningProcesses(h),
        'nvmlDeviceGetGraphicsRunningProcesses': lambda: N.nvmlDeviceGetGraphicsRunningProcesses(h),
        'nvmlDeviceGetMPSComputeRunningProcesses': lambda: N.nvmlDeviceGetMPSComputeRunningProcesses(h),
        'nvmlDeviceGetAccountingMode': lambda: N.nvmlDeviceGetAccountingMode(h),
        'nvmlDeviceGetTotalEnergyConsumption': lambda: N.nvmlDeviceGetTotalEnergyConsumption(h),
        'nvmlDeviceGetProcessUtilization': lambda: N.nvmlDeviceGetProcessUtilization(h, 0),
    }
    return c
mode = sys.argv[1]
if mode == 'first':
    r, cpu, wall, err = timed(N.nvmlInit)
    res = {'nvmlInit': {'cpuMs': cpu, 'wallMs': wall, 'error': err}}
    h, cpu, wall, err = timed(lambda: N.nvmlDeviceGetHandleByIndex(idx))
    res['nvmlDeviceGetHandleByIndex'] = {'cpuMs': cpu, 'wallMs': wall, 'error': err}
    for name, fn in calls(h).items():
        r, cpu, wall, err = timed(fn)
        res[name] = {'cpuMs': cpu, 'wallMs': wall, 'error': err}
    print(json.dumps({'first': res}))
    sys.exit(0)
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(idx)
if mode == 'costs':
    n = int(sys.argv[3])
    res = {}
    for name, fn in calls(h).items():
        cpu, wall, errs = [], [], {}
        for i in range(n):
            r, c, w, err = timed(fn)
            cpu.append(c); wall.append(w)
            if err: errs[err] = errs.get(err, 0) + 1
        res[name] = {'cpuMs': stats(cpu), 'wallMs': stats(wall), 'errors': errs}
    print(json.dumps({'costs': {'label': sys.argv[2], 'calls': res}}))
elif mode == 'cadence':
    secs = float(sys.argv[2])
    series = {
        'energyCounter': lambda: N.nvmlDeviceGetTotalEnergyConsumption(h),
        'powerInstant': lambda: N.nvmlDeviceGetFieldValues(h, [FI_POWER_INSTANT])[0].value.uiVal,
        'powerUsage': lambda: N.nvmlDeviceGetPowerUsage(h),
        'utilizationGpu': lambda: N.nvmlDeviceGetUtilizationRates(h).gpu,
        'memoryUsedV2': lambda: N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2).used,
    }
    res = {}
    for name, fn in series.items():
        last = None; changes = []; err = None; end = time.monotonic() + secs; reads = 0
        while time.monotonic() < end:
            try:
                v = fn()
            except Exception as e:
                err = str(e); break
            reads += 1
            t = time.monotonic()
            if last is not None and v != last[1]: changes.append(t)
            last = (t, v)
            time.sleep(0.001)
        gaps = [round((b - a) * 1000, 1) for a, b in zip(changes, changes[1:])]
        res[name] = {'reads': reads, 'changes': len(changes), 'changeIntervalMs': stats(gaps), 'error': err}
    print(json.dumps({'cadence': res}))
elif mode == 'retention':
    try:
        s = N.nvmlDeviceGetProcessUtilization(h, 0)
        now = time.time() * 1e6
        ts = sorted(x.timeStamp for x in s)
        per = {}
        for x in s: per.setdefault(x.pid, []).append(x.timeStamp)
        steps = []
        for v in per.values():
            v.sort(); steps += [(b - a) / 1000 for a, b in zip(v, v[1:])]
        print(json.dumps({'retention': {'samples': len(s), 'oldestAgeS': (now - ts[0]) / 1e6 if ts else None,
                                         'newestAgeS': (now - ts[-1]) / 1e6 if ts else None,
                                         'pids': len(per), 'sampleIntervalMs': stats(steps)}}))
    except Exception as e:
        print(json.dumps({'retention': {'error': str(e)}}))
elif mode == 'view':
    pids = [int(p) for p in sys.argv[2].split(',') if p]
    def safe(fn):
        try: return fn()
        except Exception as e: return {'error': str(e)}
    def procs(fn):
        r = safe(fn)
        if isinstance(r, dict): return r
        return [{'pid': p.pid, 'usedGpuMemory': p.usedGpuMemory} for p in r]
    mem = safe(lambda: N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2))
    res = {
        'memoryV2': mem if isinstance(mem, dict) else {'total': mem.total, 'reserved': mem.reserved, 'used': mem.used, 'free': mem.free},
        'compute': procs(lambda: N.nvmlDeviceGetComputeRunningProcesses(h)),
        'graphics': procs(lambda: N.nvmlDeviceGetGraphicsRunningProcesses(h)),
        'mps': procs(lambda: N.nvmlDeviceGetMPSComputeRunningProcesses(h)),
        'accountingMode': safe(lambda: N.nvmlDeviceGetAccountingMode(h)),
        'migMode': safe(lambda: list(N.nvmlDeviceGetMigMode(h))),
        'accountingStats': {p: safe(lambda p=p: N.nvmlDeviceGetAccountingStats(h, p).maxMemoryUsage) for p in pids},
        'processUtilization': safe(lambda: [{'pid': x.pid, 'sm': x.smUtil, 'mem': x.memUtil, 'timeStamp': x.timeStamp}
                                             for x in N.nvmlDeviceGetProcessUtilization(h, int((time.time() - 5) * 1e6))]),
        'pids': pids,
    }
    print(json.dumps({'view': res}))
`;

// A CUDA job: `hold <MiB> <seconds>` allocates, prints its own pid's memory as pynvml lists it and torch's view,
// holds, frees, exits; `busy <seconds>` keeps the GPU busy with matmuls (after "ready"); `windows <s,...>` runs busy
// windows on the parent's cue, each bracketed by pynvml's energy counter and integrating instant power.
const PY_JOB = `
import json, os, sys, time
import torch
mode = sys.argv[1]
def nvml():
    try:
        import pynvml as N
        N.nvmlInit()
        return N, N.nvmlDeviceGetHandleByIndex(int(os.environ.get('CHECK_NVML_INDEX', '0')))
    except Exception as e:
        print(json.dumps({'nvmlError': str(e)}), flush=True)
        return None, None
if mode == 'hold':
    mib, secs = int(sys.argv[2]), float(sys.argv[3])
    x = torch.empty(mib << 20, dtype=torch.uint8, device='cuda')
    x.fill_(1)
    torch.cuda.synchronize()
    t0 = time.monotonic()
    N, h = nvml()
    mine = None
    if N:
        try:
            mine = [p.usedGpuMemory for p in N.nvmlDeviceGetComputeRunningProcesses(h) if p.pid == os.getpid()]
        except Exception as e:
            mine = str(e)
    print(json.dumps({'pid': os.getpid(), 'pynvmlOwnBytes': mine, 'torchReserved': torch.cuda.memory_reserved()}), flush=True)
    time.sleep(max(0.0, secs - (time.monotonic() - t0)))
    del x
    torch.cuda.synchronize()
elif mode == 'busy':
    secs = float(sys.argv[2])
    a = torch.randn(8192, 8192, device='cuda')
    torch.cuda.synchronize()
    print('ready', flush=True)
    t = time.time()
    while time.time() - t < secs:
        a = a @ a
        a /= a.norm()
    torch.cuda.synchronize()
elif mode == 'windows':
    N, h = nvml()
    FI = getattr(N, 'NVML_FI_DEV_POWER_INSTANT', 186) if N else 186
    a = torch.randn(8192, 8192, device='cuda')
    for i in range(3):
        a = a @ a; a /= a.norm()
    torch.cuda.synchronize()
    for secs in [float(s) for s in sys.argv[2].split(',')]:
        print('go', flush=True)
        sys.stdin.readline()
        e0 = N.nvmlDeviceGetTotalEnergyConsumption(h) if N else None
        t0 = time.monotonic(); powers = []
        i = 0
        while time.monotonic() - t0 < secs:
            a = a @ a; a /= a.norm(); i += 1
            if i % 2 == 0: torch.cuda.synchronize()
            if N:
                try: powers.append((time.monotonic(), N.nvmlDeviceGetFieldValues(h, [FI])[0].value.uiVal / 1000))
                except Exception: pass
        torch.cuda.synchronize()
        t1 = time.monotonic()
        e1 = N.nvmlDeviceGetTotalEnergyConsumption(h) if N else None
        integ = sum((b[0] - a_[0]) * a_[1] for a_, b in zip(powers, powers[1:])) if len(powers) > 1 else None
        print(json.dumps({'seconds': t1 - t0, 'counterJ': (e1 - e0) / 1000 if e0 is not None else None,
                          'powerIntegralJ': integ, 'powerSamples': len(powers)}), flush=True)
        sys.stdin.readline()
`;

/** Runs a python program to its end; resolves with its last JSON line (or throws with its stderr). */
function python(program, args, { env = childEnv(), timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(PY, ['-c', program, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const last = stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .pop();
      if (code === 0 && last) resolve(JSON.parse(last));
      else reject(new Error(`python exited with ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

/** Starts a python job; `lines` collects its stdout lines, `next(pred)` waits for one (120 s at most). */
function startJob(args, env = childEnv()) {
  const child = spawn(PY, ['-c', PY_JOB, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  const waiters = [];
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) if (w.pred(l)) w.resolve(l);
  });
  const exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  const next = (pred) =>
    new Promise((resolve, reject) => {
      const have = lines.find(pred);
      if (have) return resolve(have);
      const w = { pred, resolve };
      waiters.push(w);
      exited.then((code) => reject(new Error(`job exited (${code}) first: ${stderr.slice(-1500)}`)));
      setTimeout(() => reject(new Error('no answer from the job within 120 s')), 120_000).unref();
    });
  return { child, lines, next, exited, stderr: () => stderr };
}

/** The GPU thread's CPU so far, ms (its thread clock, as /proc/<pid>/task/<tid>/schedstat reports it). */
function gpuThreadCpuMs() {
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'taskmeter-gpu') continue;
      return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
    } catch {}
  }
  return null;
}

const gpuSummary = (u) => ({
  wallS: u.wallTimeMs / 1000,
  gpuSamples: u.gpuSamples,
  deviceIntervalMs: u.gpuSampleIntervalMs,
  energyIntervalMs: u.gpuEnergyIntervalMs,
  processUtilizationIntervalMs: u.gpuProcessUtilizationIntervalMs,
  samplingNote: u.gpuSamplingNote,
  gpuMemoryPeakBytes: u.gpuMemoryPeakBytes,
  gpuMemoryPeakSource: u.gpuMemoryPeakSource,
  gpuEnergyJoules: u.gpuEnergyJoules,
  gpus: u.gpus.map((g) => ({
    uuid: g.uuid,
    samples: g.samples,
    reasonCode: g.reasonCode,
    memoryUsedPeakBytes: g.memoryUsedPeakBytes,
    processMemoryPeakBytes: g.processMemoryPeakBytes,
    processMemoryReasonCode: g.processMemoryReasonCode,
    processSamples: g.processSamples,
    energyJoules: g.energyJoules,
    energyReason: g.energyReason,
    utilizationAvgPercent: g.utilizationAvgPercent,
    processSmUtilizationPercent: g.processSmUtilizationPercent,
    processUtilizationSamples: g.processUtilizationSamples,
    processUtilizationReason: g.processUtilizationReason,
    powerSource: g.powerSource,
  })),
});
const nvmlIndexEnv = () => ({ CHECK_NVML_INDEX: String(dev0?.index ?? 0) });

// --- The sections ---

await section('import', 40, async () => {
  const timed = (code, extra) => {
    const s0 = performance.now();
    const text = execFileSync(process.execPath, ['-e', code], {
      env: { ...process.env, TASKMETER_GPU_DETECT_TIMEOUT_MS: '', ...extra },
      cwd: pkgRoot,
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { ms: performance.now() - s0, text: text.trim() };
  };
  const plain = timed("require('taskmeter')");
  const pending = timed("console.log(JSON.stringify(require('taskmeter').gpuInfo().pending))");
  const detect = timed(
    "const t=performance.now(); const tm=require('taskmeter'); console.log(JSON.stringify({detectMs: performance.now()-t, state: tm.gpuInfo().available}))",
    { TASKMETER_GPU_DETECT_TIMEOUT_MS: '60000' },
  );
  return {
    requireExitMs: plain.ms,
    pendingAtDefaultImport: JSON.parse(pending.text || 'null'),
    detection: JSON.parse(detect.text || '{}'),
    thisProcessImportMs: importMs,
  };
});

await section('host', 20, async () => {
  const query = smi([
    '--query-gpu=index,uuid,name,driver_version,memory.total,memory.used,power.draw,persistence_mode,mig.mode.current,accounting.mode',
    '--format=csv,noheader,nounits',
  ]);
  const list = smi(['-L']);
  let pidNamespace = null;
  try {
    pidNamespace = readlinkSync('/proc/self/ns/pid');
  } catch {}
  let kernel = null;
  try {
    kernel = readFileSync('/proc/version', 'utf8').trim();
  } catch {}
  const info = tm.gpuInfo();
  const rows = csv(query);
  return {
    info,
    kernel,
    pidNamespace,
    smiRows: rows,
    devices: info.devices.map((d) => {
      if (d.mig) return { uuid: d.uuid, mig: d.mig, smiListed: (list ?? '').includes(d.uuid) };
      const row = rows.find((r) => r[1] === d.uuid);
      return {
        uuid: d.uuid,
        name: d.name,
        nameMatches: row ? row[2] === d.name : 'not compared',
        totalMiB: compare(d.memoryTotalBytes / MiB, Number(row?.[4]), 0.01),
        driver: { ours: info.driverVersion, smi: row?.[3] ?? null },
        persistenceMode: row?.[7] ?? null,
        migMode: row?.[8] ?? null,
        accountingMode: { ours: d.accountingMode, smi: row?.[9] ?? null },
        powerReported: d.powerReported,
      };
    }),
  };
});

if (!tm.hasGpu) {
  out.noGpu = tm.gpuInfo().reason;
  console.log(`no GPU: ${out.noGpu}`);
  save();
  process.exit(0);
}

// One busy job kept running for the busy halves of nvmlCosts and gpuThread.
let busyJob = null;
const startBusy = async (secs) => {
  busyJob = startJob(['busy', String(secs)]);
  await busyJob.next((l) => l === 'ready');
};
const stopBusy = async () => {
  if (!busyJob) return;
  busyJob.child.kill('SIGKILL');
  await busyJob.exited;
  busyJob = null;
};

await section('nvmlCosts', q(70, 20), async () => {
  const n = String(q(300, 30));
  const env = childEnv(nvmlIndexEnv());
  const result = { errors: {} };
  const step = async (key, args) => {
    try {
      Object.assign(result, await python(PY_NVML, args, { env }));
    } catch (e) {
      result.errors[key] = e.message;
    }
  };
  await step('first', ['first']);
  const first = result.first;
  await step('idle', ['costs', 'idle', n]);
  const idle = result.costs;
  try {
    await startBusy(q(60, 8));
    await step('busy', ['costs', 'busy', n]);
    const busy = result.costs;
    // Quick (the fake): 1.5 s a series, ~14 gaps of its 100 ms steps, so that the median holds when a loaded machine
    // delays a few polls (0.5 s gave 4 gaps: two late polls moved the median to 115 ms).
    await step('cadence', ['cadence', String(q(2, 1.5))]);
    await step('retention', ['retention']);
    result.costs = { idle, busy };
  } finally {
    // the busy job stays for gpuThread
  }
  result.first = first;
  out.nvmlCosts = result;
  // The table: median CPU µs per call, idle / busy
  const table = {};
  for (const [name, v] of Object.entries(result.costs?.idle?.calls ?? {})) {
    const b = result.costs?.busy?.calls?.[name];
    table[name] = {
      idleCpuUs: v.cpuMs ? Math.round(v.cpuMs.median * 1000) : null,
      busyCpuUs: b?.cpuMs ? Math.round(b.cpuMs.median * 1000) : null,
      busyP90CpuUs: b?.cpuMs ? Math.round(b.cpuMs.p90 * 1000) : null,
      busyMaxCpuUs: b?.cpuMs ? Math.round(b.cpuMs.max * 1000) : null,
      errors: { ...v.errors, ...(b?.errors ?? {}) },
    };
  }
  return { table, cadence: result.cadence ?? null, retention: result.retention ?? null, errors: result.errors };
});

await section('gpuThread', q(30, 8), async () => {
  const measure = async (label, secs) => {
    const tr = new tm.ResourceTracker().start(); // default settings
    await sleep(q(3000, 500)); // costs measured, periods planned
    const c0 = gpuThreadCpuMs();
    const w0 = performance.now();
    await sleep(secs * 1000);
    const c1 = gpuThreadCpuMs();
    const wall = (performance.now() - w0) / 1000;
    const u = tr.stop();
    return {
      label,
      cpuMsPerSecond: c0 === null || c1 === null ? null : (c1 - c0) / wall,
      ...gpuSummary(u),
    };
  };
  const busy = busyJob ? await measure('busy', q(10, 2)) : { error: 'no busy job' };
  await stopBusy();
  const idle = await measure('idle', q(10, 2));
  return { budgetMsPerSecond: 10, busy, idle };
});
await stopBusy();

const measureJob = async (args, extraEnv = {}) => {
  // as the CLI does: measureCommand at default settings
  const lines = [];
  const r = await tm.measureCommand(PY, ['-c', PY_JOB, ...args], {
    env: childEnv({ ...nvmlIndexEnv(), ...extraEnv }),
    stdio: 'pipe',
  });
  for (const l of String(r.stdout).split('\n')) if (l.startsWith('{')) lines.push(JSON.parse(l));
  return {
    exitCode: r.exitCode,
    pid: r.pid,
    job: lines[0] ?? null,
    usage: gpuSummary(r.usage),
    stderr: String(r.stderr).slice(-800),
  };
};

await section('shortJobs', q(60, 15), async () => {
  const jobs = [];
  for (const secs of [0.2, 1, 3]) {
    const j = await measureJob(['hold', '1024', String(secs)]);
    const g = j.usage.gpus[0] ?? {};
    const own = Array.isArray(j.job?.pynvmlOwnBytes) ? j.job.pynvmlOwnBytes[0] : null;
    jobs.push({
      holdS: secs,
      exitCode: j.exitCode,
      caught: typeof g.processMemoryPeakBytes === 'number' && g.processMemoryPeakBytes >= 1024 * MiB,
      processPeak: compare(g.processMemoryPeakBytes ?? null, own ?? null, 0.02),
      job: j.job,
      usage: j.usage,
      stderr: j.exitCode === 0 ? undefined : j.stderr,
    });
  }
  return { jobs };
});

await section('backToBack', q(40, 10), async () => {
  const first = await measureJob(['hold', '2048', '1']);
  const second = await measureJob(['hold', '256', '0.5']);
  const a = first.usage.gpus[0] ?? {};
  const b = second.usage.gpus[0] ?? {};
  return {
    first: first.usage,
    second: second.usage,
    secondJob: second.job,
    // the second must show its own 256 MiB (+ its CUDA context), never the first's 2 GiB
    secondProcessPeakBelowFirst:
      typeof b.processMemoryPeakBytes === 'number' && typeof a.processMemoryPeakBytes === 'number'
        ? b.processMemoryPeakBytes < a.processMemoryPeakBytes - 1024 * MiB
        : 'not compared',
    secondDevicePeakBelowFirst:
      typeof b.memoryUsedPeakBytes === 'number' && typeof a.memoryUsedPeakBytes === 'number'
        ? b.memoryUsedPeakBytes < a.memoryUsedPeakBytes
        : 'not compared',
  };
});

await section('energy', q(40, 10), async () => {
  const job = startJob(['windows', '2,0.1'], childEnv(nvmlIndexEnv()));
  const windows = [];
  try {
    for (let i = 0; i < 2; i++) {
      await job.next((l) => l === 'go' && job.lines.filter((x) => x === 'go').length === i + 1);
      const tr = new tm.ResourceTracker().start(); // default settings
      job.child.stdin.write('\n');
      const line = await job.next(
        (l) => l.startsWith('{"seconds"') && job.lines.filter((x) => x.startsWith('{"seconds"')).length === i + 1,
      );
      const u = tr.stop();
      job.child.stdin.write('\n');
      const child = JSON.parse(line);
      const ours = u.gpus[0]?.energyJoules ?? null;
      windows.push({
        busyS: child.seconds,
        windowS: u.wallTimeMs / 1000,
        // the window holds the busy part plus the cue's round trip and two counter reads (~3 ms each): joules are
        // compared as they are, and as watts over each side's own span. The counter moves in 100 ms steps: for the
        // 100 ms window it is itself ±100 %.
        againstCounter: compare(ours, child.counterJ, 0.05),
        againstPowerIntegral: compare(ours, child.powerIntegralJ, 0.1),
        wattsAgainstCounter: compare(
          ours === null ? null : ours / (u.wallTimeMs / 1000),
          child.counterJ === null ? null : child.counterJ / child.seconds,
          0.05,
        ),
        wattsAgainstPowerIntegral: compare(
          ours === null ? null : ours / (u.wallTimeMs / 1000),
          child.powerIntegralJ === null ? null : child.powerIntegralJ / child.seconds,
          0.1,
        ),
        childPowerSamples: child.powerSamples,
        energyReason: u.gpus[0]?.energyReason ?? null,
        energyIntervalMs: u.gpuEnergyIntervalMs,
        gpuSamples: u.gpuSamples,
      });
    }
  } finally {
    job.child.stdin.end();
    job.child.kill('SIGKILL');
    await job.exited;
  }
  return { windows };
});

await section('smUtil', q(45, 20), async () => {
  // Long enough for per-process utilization readings inside the job at the period the budget gives them here.
  const probe = new tm.ResourceTracker().start();
  await sleep(1000);
  const period = probe.stop().gpuProcessUtilizationIntervalMs ?? 1000;
  const secs = Math.min(q(25, 15), Math.max(q(6, 2), period / 1000 + 3));
  const pmon = spawn(SMI, ['pmon', '-s', 'u', '-d', '1', ...(dev0?.mig ? [] : ['-i', String(dev0?.index ?? 0)])], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const lines = [];
  createInterface({ input: pmon.stdout }).on('line', (l) => lines.push(l));
  pmon.on('error', (e) => lines.push(`# error: ${e.message}`));
  const job = startJob(['busy', String(secs)]);
  const tracked = tm.trackProcess(job.child.pid); // default settings
  await job.next((l) => l === 'ready').catch(() => null);
  const u = await tracked.exited;
  await job.exited;
  pmon.kill();
  files.pmon.push(...lines);
  // pmon's header names its columns (drivers add some): "# gpu  pid  type  sm  mem  enc  dec ... command"
  const header = lines.find((l) => /^#\s*gpu\s/.test(l));
  const cols = header ? header.replace(/^#\s*/, '').split(/\s+/) : ['gpu', 'pid', 'type', 'sm'];
  const pidCol = cols.indexOf('pid');
  const smCol = cols.indexOf('sm');
  const sm = lines
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => Number(f[pidCol]) === job.child.pid && f[smCol] !== '-')
    .map((f) => Number(f[smCol]))
    .filter(Number.isFinite);
  const pmonMean = sm.length ? sm.reduce((a, x) => a + x, 0) / sm.length : null;
  const g = u.gpus[0] ?? {};
  return {
    // the same question: the mean of the driver's per-process samples (pmon prints one per second, '-' without)
    smPercent: compare(g.processSmUtilizationPercent ?? null, pmonMean, 0.1),
    jobSeconds: secs,
    pmonSamples: sm.length,
    ourSamples: g.processUtilizationSamples ?? null,
    processUtilizationIntervalMs: u.gpuProcessUtilizationIntervalMs,
    processUtilizationReason: g.processUtilizationReason ?? null,
    deviceUtilizationAvgPercent: g.utilizationAvgPercent ?? null,
    samplingNote: u.gpuSamplingNote,
  };
});

await section('crossCheck', q(50, 12), async () => {
  const holders = [startJob(['hold', '4096', String(q(6, 2))]), startJob(['hold', '2048', String(q(6, 2))])];
  const trackers = holders.map((h) => tm.trackProcess(h.child.pid));
  const held = await Promise.all(holders.map((h) => h.next((l) => l.startsWith('{"pid"')).then(JSON.parse)));
  await sleep(q(500, 200));
  const pids = holders.map((h) => h.child.pid);
  let view = null;
  try {
    view = (await python(PY_NVML, ['view', pids.join(',')], { env: childEnv(nvmlIndexEnv()) })).view;
  } catch (e) {
    view = { error: e.message };
  }
  const snap = tm.snapshot().gpus[0] ?? null;
  const apps = smi(['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']);
  const usages = await Promise.all(trackers.map((t) => t.exited));
  await Promise.all(holders.map((h) => h.exited));
  const perPid = pids.map((pid, i) => {
    const pyEntry = Array.isArray(view?.compute) ? view.compute.find((p) => p.pid === pid) : undefined;
    const smiMiB = Number(csv(apps).find((r) => Number(r[0]) === pid)?.[1]);
    const ours = usages[i].gpus[0]?.processMemoryPeakBytes ?? null;
    return {
      pid,
      heldMiB: i === 0 ? 4096 : 2048,
      ourPeakVsPynvml: compare(ours, pyEntry?.usedGpuMemory ?? null, 0.02),
      ourPeakVsSmiMiB: compare(ours === null ? null : ours / MiB, Number.isFinite(smiMiB) ? smiMiB : null, 0.02),
      jobOwnView: held[i],
    };
  });
  // JS-thread costs with the GPU cache loaded, and snapshot() in a child without a GPU (same machine, same moment)
  for (let i = 0; i < 2000; i++) tm.snapshot();
  let t = process.hrtime.bigint();
  for (let i = 0; i < 20000; i++) tm.snapshot();
  const snapshotNs = Number(process.hrtime.bigint() - t) / 20000;
  t = process.hrtime.bigint();
  for (let i = 0; i < 5000; i++) tm.measureSync(() => 0);
  const measureSyncNs = Number(process.hrtime.bigint() - t) / 5000;
  let snapshotNoGpuNs = null;
  try {
    snapshotNoGpuNs = Number(
      execFileSync(
        process.execPath,
        [
          '-e',
          "const tm=require('taskmeter'); for(let i=0;i<2000;i++) tm.snapshot(); const t=process.hrtime.bigint(); for(let i=0;i<20000;i++) tm.snapshot(); console.log(Number(process.hrtime.bigint()-t)/20000)",
        ],
        { env: { ...process.env, TASKMETER_DISABLE_GPU: '1' }, cwd: pkgRoot, encoding: 'utf8', timeout: 60_000 },
      ).trim(),
    );
  } catch {}
  return {
    perPid,
    memoryUsedV2: compare(snap?.memoryUsedBytes ?? null, view?.memoryV2?.used ?? null, 0.02),
    pynvml: view,
    ourSnapshot: snap,
    accountingMode: { ours: dev0?.accountingMode ?? null, pynvml: view?.accountingMode ?? null },
    migMode: { ours: dev0?.mig ?? null, pynvml: view?.migMode ?? null },
    entryLayout: { processListVersion: tm.gpuInfo().processListVersion, entryBytes: tm.gpuInfo().processEntryBytes },
    snapshotNs,
    snapshotNoGpuNs,
    snapshotGpuShareNs: snapshotNoGpuNs === null ? null : snapshotNs - snapshotNoGpuNs,
    measureSyncNs,
  };
});

// --- Summary ---
const s = out.sections;
const pick = (o, ...path) => path.reduce((v, k) => (v == null ? v : v[k]), o) ?? null;
out.summary = {
  seconds: elapsedS(),
  sections: Object.fromEntries(
    Object.entries(s).map(([k, v]) => [k, v.error ? `ERROR: ${v.error.split('\n')[0]}` : v.skipped ? 'skipped' : 'ok']),
  ),
  requireExitMs: pick(s, 'import', 'requireExitMs'),
  detectionMs: pick(s, 'import', 'detection', 'detectMs'),
  costTableCpuUs: pick(s, 'nvmlCosts', 'table'),
  cadenceMedianMs: Object.fromEntries(
    Object.entries(pick(s, 'nvmlCosts', 'cadence') ?? {}).map(([k, v]) => [k, v?.changeIntervalMs?.median ?? null]),
  ),
  processUtilizationRetention: pick(s, 'nvmlCosts', 'retention'),
  gpuThreadCpuMsPerS: {
    busy: pick(s, 'gpuThread', 'busy', 'cpuMsPerSecond'),
    idle: pick(s, 'gpuThread', 'idle', 'cpuMsPerSecond'),
  },
  gpuThreadPeriodsMs: pick(s, 'gpuThread', 'busy')
    ? {
        device: pick(s, 'gpuThread', 'busy', 'deviceIntervalMs'),
        energy: pick(s, 'gpuThread', 'busy', 'energyIntervalMs'),
        processUtilization: pick(s, 'gpuThread', 'busy', 'processUtilizationIntervalMs'),
      }
    : null,
  shortJobsCaught: (pick(s, 'shortJobs', 'jobs') ?? []).map((j) => ({
    holdS: j.holdS,
    caught: j.caught,
    peak: j.processPeak,
  })),
  backToBack: s.backToBack
    ? { process: s.backToBack.secondProcessPeakBelowFirst, device: s.backToBack.secondDevicePeakBelowFirst }
    : null,
  energy: (pick(s, 'energy', 'windows') ?? []).map((w) => ({
    busyS: w.busyS,
    counter: w.againstCounter,
    powerIntegral: w.againstPowerIntegral,
    wattsCounter: w.wattsAgainstCounter,
    wattsPowerIntegral: w.wattsAgainstPowerIntegral,
  })),
  smPercent: pick(s, 'smUtil', 'smPercent'),
  crossCheck: s.crossCheck
    ? {
        perPid: s.crossCheck.perPid?.map((p) => ({ pid: p.pid, pynvml: p.ourPeakVsPynvml, smi: p.ourPeakVsSmiMiB })),
        memoryUsedV2: s.crossCheck.memoryUsedV2,
        snapshotGpuShareNs: s.crossCheck.snapshotGpuShareNs,
      }
    : null,
};
save();
console.log(JSON.stringify(out.summary, null, 1));
process.exit(0);
