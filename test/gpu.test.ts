// The GPU path without a GPU: a fake NVML (test/fixtures/fake-nvml) driven by scenario files, fault injection and
// symbol-less builds; Debian's real libnvidia-ml with no driver; and the environment switches. Each case runs a
// scenario (a function beside its assertions) in a child process, so the GPU environment of the test applies.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  debianNvml,
  fakeNvml,
  fakeNvmlDir,
  gpuEnv,
  lastJson,
  MiB,
  recordValidator,
  requireSystemTool,
  runChild,
  runScenario,
  type Scenario,
  writeFakeNvmlScenario,
} from './helpers';

const validate = recordValidator();
function expectValidRecord(rec: unknown): void {
  expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
}

const work = mkdtempSync(join(tmpdir(), 'taskmeter-gpu-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const scenarioFile = (text: string): string => writeFakeNvmlScenario(work, text);

const BASE = [
  'count=2',
  'dev0.name=Fake H100',
  'dev0.uuid=GPU-11111111-2222-3333-4444-555555555555',
  `dev0.total=${80 * 1024 * MiB}`,
  `dev0.used=${2048 * MiB}`,
  'dev0.util=40',
  'dev0.power_mw=300000',
  'dev0.energy_mj=5000000',
  `dev0.procs=4242:${100 * MiB},self:${64 * MiB},777:${5 * MiB}`,
  'dev1.name=Fake A100',
  'dev1.uuid=GPU-99999999-8888-7777-6666-555555555555',
  `dev1.used=${512 * MiB}`,
  'dev1.power_mw=100000',
].join('\n');

// Each scenario runs in a child process (runScenario) against whatever NVML the environment points at: the fake,
// Debian's real library, none. Those used throughout are here; the others sit beside the test that checks them.
const readInfo: Scenario = ({ tm }) => ({ hasGpu: tm.hasGpu, info: tm.gpuInfo(), snap: tm.snapshot() });
// A window of 300 ms, longer if need be until it holds a few GPU readings: on a loaded machine the GPU thread's
// measured costs (and so its pace) grow, and a window's figures come only from readings inside it.
const measureWindow: Scenario = ({ tm, sleep, waitFor }) => {
  const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
  sleep(300);
  waitFor(() => t.usage!.gpuSamples >= 4);
  const usage = t.stop();
  return { usage, record: tm.toRecord(usage), snap: tm.snapshot(), info: tm.gpuInfo() };
};

/** Runs a scenario against the fake NVML with a scenario file (BASE unless given); returns its JSON. */
async function gpuCase(
  scenarioCode: Scenario,
  opts: { scenario?: string; variant?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<any> {
  const env = gpuEnv({
    TASKMETER_NVML_LIBRARY: fakeNvml(opts.variant ?? 'full'),
    FAKE_NVML_SCENARIO: scenarioFile(opts.scenario ?? BASE),
    ...opts.env,
  });
  const r = await runScenario(scenarioCode, { env, timeoutMs: opts.timeoutMs ?? 20_000 });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return { ...lastJson(r.stdout), elapsedMs: r.elapsedMs };
}

describe('detection', () => {
  it('finds the fake GPUs: hasGpu, gpuInfo() and snapshot().gpus', async () => {
    const { hasGpu, info, snap } = await gpuCase(readInfo);
    expect(hasGpu).toBe(true);
    expect(info).toMatchObject({
      available: true,
      reason: null,
      library: fakeNvml('full'),
      driverVersion: '550.54.15',
      nvmlVersion: '12.550.54.15',
      pending: false,
      processAttribution: true,
      processListVersion: 3,
      processEntryBytes: 24,
    });
    expect(info.devices).toEqual([
      {
        index: 0,
        uuid: 'GPU-11111111-2222-3333-4444-555555555555',
        name: 'Fake H100',
        memoryTotalBytes: 80 * 1024 * MiB,
        mig: null,
        accountingMode: 'disabled',
        accountingHint: expect.stringMatching(/nvidia-smi -am 1/),
        powerReported: 'average',
      },
      {
        index: 1,
        uuid: 'GPU-99999999-8888-7777-6666-555555555555',
        name: 'Fake A100',
        memoryTotalBytes: 80 * 1024 * MiB,
        mig: null,
        accountingMode: 'disabled',
        accountingHint: expect.stringMatching(/nvidia-smi -am 1/),
        powerReported: 'average',
      },
    ]);
    expect(info).toMatchObject({ deviceOrder: 'FASTEST_FIRST', deviceOrderCertain: false, pidMatch: 'host' });
    expect(snap.gpus).toHaveLength(2);
    expect(snap.gpus[0]).toMatchObject({
      index: 0,
      memoryUsedBytes: 2048 * MiB,
      memoryTotalBytes: 80 * 1024 * MiB,
      processMemoryBytes: 64 * MiB, // our own entry, not the first in the list
      processMemoryReason: null,
      utilizationPercent: 40,
      powerWatts: 300,
    });
    expect(snap.gpus[0].ageMs).toBeGreaterThanOrEqual(0);
    expect(snap.gpus[0].ageMs).toBeLessThan(5000);
    expect(snap.gpus[1].processMemoryBytes).toBe(0); // not on that GPU: 0, a real answer
  });

  const unavailable: [string, Record<string, string | undefined>, string | undefined, RegExp, string][] = [
    ['driver not loaded', {}, 'init=9', /driver is not loaded/, 'NVML_ERROR_DRIVER_NOT_LOADED'],
    ['no permission', {}, 'init=4', /insufficient permissions/, 'NVML_ERROR_NO_PERMISSION'],
    ['driver/library mismatch', {}, 'init=18', /version mismatch/, 'NVML_ERROR_LIB_RM_VERSION_MISMATCH'],
    ['no devices', {}, 'count=0', /no NVIDIA GPU/, 'GPU_NONE_FOUND'],
    [
      'a required symbol missing',
      { variant: 'missing-required' },
      undefined,
      /lacks required functions: nvmlDeviceGetHandleByIndex_v2/,
      'NVML_LIBRARY_INCOMPLETE',
    ],
    [
      'TASKMETER_DISABLE_GPU=1',
      { TASKMETER_DISABLE_GPU: '1' },
      undefined,
      /disabled by TASKMETER_DISABLE_GPU/,
      'GPU_DISABLED',
    ],
    [
      'a relative TASKMETER_NVML_LIBRARY',
      { TASKMETER_NVML_LIBRARY: 'lib/libnvidia-ml.so.1' },
      undefined,
      /must be an absolute path/,
      'NVML_LIBRARY_PATH_NOT_ABSOLUTE',
    ],
    [
      'a TASKMETER_NVML_LIBRARY that does not exist',
      { TASKMETER_NVML_LIBRARY: '/nonexistent/libnvidia-ml.so.1' },
      undefined,
      /could not load TASKMETER_NVML_LIBRARY=\/nonexistent/,
      'NVML_LIBRARY_LOAD_FAILED',
    ],
    [
      'CUDA_VISIBLE_DEVICES hiding every GPU',
      { CUDA_VISIBLE_DEVICES: '' },
      undefined,
      /hides every GPU/,
      'GPU_HIDDEN_BY_CUDA_VISIBLE_DEVICES',
    ],
    [
      'CUDA_VISIBLE_DEVICES=-1',
      { CUDA_VISIBLE_DEVICES: '-1' },
      undefined,
      /hides every GPU/,
      'GPU_HIDDEN_BY_CUDA_VISIBLE_DEVICES',
    ],
  ];
  for (const [what, env, scenario, reason, code] of unavailable) {
    it(`reports hasGpu=false with a reason and its code: ${what}`, async () => {
      const { variant, ...rest } = env as Record<string, string | undefined> & { variant?: string };
      const { hasGpu, info, snap } = await gpuCase(readInfo, { variant, env: rest, scenario: scenario ?? BASE });
      expect(hasGpu).toBe(false);
      expect(info.available).toBe(false);
      expect(info.reason).toMatch(reason);
      expect(info.reasonCode).toBe(code);
      expect(info.devices).toEqual([]);
      expect(snap.gpus).toEqual([]);
      expect(snap.rssBytes).toBeGreaterThan(0);
    });
  }

  it('says where it looked when no library is found', async () => {
    const r = await runScenario(readInfo, { env: gpuEnv({ LD_LIBRARY_PATH: '/nonexistent' }) });
    const { hasGpu, info } = lastJson(r.stdout);
    if (info.library === null) {
      expect(hasGpu).toBe(false);
      expect(info.reason).toMatch(/libnvidia-ml\.so\.1/);
      expect(info.reason).toMatch(/\/usr\/lib\/wsl\/lib/);
      expect(info.reasonCode).toBe('NVML_LIBRARY_NOT_FOUND');
    } else {
      // a machine with a real NVIDIA driver: detection must still have answered
      expect(typeof info.available).toBe('boolean');
    }
  });

  it('honours CUDA_VISIBLE_DEVICES by index (CUDA_DEVICE_ORDER=PCI_BUS_ID) and by UUID (prefix)', async () => {
    const pci = { CUDA_DEVICE_ORDER: 'PCI_BUS_ID' };
    const byIndex = await gpuCase(readInfo, { env: { CUDA_VISIBLE_DEVICES: '1', ...pci } });
    expect(byIndex.info.devices.map((d: any) => d.index)).toEqual([1]);
    expect(byIndex.info).toMatchObject({ deviceOrder: 'PCI_BUS_ID', deviceOrderCertain: true });
    expect(byIndex.snap.gpus.map((g: any) => g.uuid)).toEqual(['GPU-99999999-8888-7777-6666-555555555555']);
    const byUuid = await gpuCase(readInfo, { env: { CUDA_VISIBLE_DEVICES: 'GPU-99999999,GPU-1111' } });
    expect(byUuid.info.devices.map((d: any) => d.index)).toEqual([1, 0]);
    const stops = await gpuCase(readInfo, { env: { CUDA_VISIBLE_DEVICES: '0,7,1', ...pci } }); // CUDA stops at an invalid entry
    expect(stops.info.devices.map((d: any) => d.index)).toEqual([0]);
  });

  // CUDA's own view, for the CUDA-order helper: the fake libcuda ranks the A100 first (FASTEST_FIRST).
  const cuda = {
    TASKMETER_GPU_DETECT_TIMEOUT_MS: '30000', // detection includes the helper process (slow under sanitizers)
    TASKMETER_CUDA_LIBRARY: join(fakeNvmlDir, 'libfake-cuda.so'),
    FAKE_CUDA_PCI: 'GPU-11111111-2222-3333-4444-555555555555,GPU-99999999-8888-7777-6666-555555555555',
    FAKE_CUDA_FASTEST: 'GPU-99999999-8888-7777-6666-555555555555,GPU-11111111-2222-3333-4444-555555555555',
  };
  const noCuda = { TASKMETER_GPU_DETECT_TIMEOUT_MS: '30000', TASKMETER_CUDA_LIBRARY: '/nonexistent/libcuda.so.1' };

  it("a bare index on two different GPUs with CUDA's default order: CUDA is asked in a helper process and the right GPU picked", async () => {
    const zero = await gpuCase(readInfo, { env: { CUDA_VISIBLE_DEVICES: '0', ...cuda } });
    expect(zero.hasGpu).toBe(true);
    expect(zero.info.devices.map((d: any) => d.name)).toEqual(['Fake A100']); // CUDA's 0, NVML's 1
    expect(zero.info).toMatchObject({
      deviceOrderCertain: true,
      deviceOrderNote: expect.stringMatching(/helper process/),
    });
    const one = await gpuCase(readInfo, { env: { CUDA_VISIBLE_DEVICES: '1', ...cuda } });
    expect(one.info.devices.map((d: any) => d.name)).toEqual(['Fake H100']);
    expect(one.snap.gpus[0].processMemoryBytes).toBe(64 * MiB); // readings of the right GPU: ours is on the H100
  });

  it('the CUDA-order helper ignores NODE_OPTIONS: a --require that prints does not break its answer', async () => {
    const preload = join(work, 'prints.cjs');
    writeFileSync(preload, "console.log('GPU-printed-by-a-preload');\n");
    const r = await gpuCase(readInfo, {
      env: { CUDA_VISIBLE_DEVICES: '0', NODE_OPTIONS: `--require ${preload}`, ...cuda },
    });
    expect(r.info.devices.map((d: any) => d.name)).toEqual(['Fake A100']);
    expect(r.info).toMatchObject({
      deviceOrderCertain: true,
      deviceOrderNote: expect.stringMatching(/helper process/),
    });
  });

  it("a bare index on two different GPUs with CUDA's default order and no CUDA to ask: says it cannot tell, attributes nothing", async () => {
    const { hasGpu, info, snap } = await gpuCase(readInfo, { env: { CUDA_VISIBLE_DEVICES: '1', ...noCuda } });
    expect(hasGpu).toBe(false);
    expect(info.reason).toMatch(/names GPUs by index, but CUDA's order of these GPUs is unknown/);
    expect(info.reasonCode).toBe('GPU_CUDA_ORDER_UNKNOWN');
    expect(info.reason).toMatch(/CUDA_DEVICE_ORDER=PCI_BUS_ID/);
    expect(snap.gpus).toEqual([]);
    expect(info.reason).toMatch(/asking CUDA in a helper process failed: the CUDA driver library could not be loaded/);
    const { record } = await gpuCase(measureWindow, { env: { CUDA_VISIBLE_DEVICES: '1', ...noCuda } });
    expect(record.gpus).toEqual([]);
    expect(record.gpu_reason).toMatch(/order of these GPUs is unknown/);
    expectValidRecord(record);
    // every GPU named by index: the set is certain, only CUDA's labels are not
    const all = await gpuCase(readInfo, { env: { CUDA_VISIBLE_DEVICES: '0,1', ...noCuda } });
    expect(all.info.devices).toHaveLength(2);
    expect(all.info.deviceOrderCertain).toBe(false);
    expect(all.info.deviceOrderNote).toMatch(/different GPU models/);
  });

  it('a bare index on identical GPUs follows FASTEST_FIRST (= PCI order for one model)', async () => {
    const same = BASE.replace('dev1.name=Fake A100', 'dev1.name=Fake H100');
    const { hasGpu, info } = await gpuCase(readInfo, { scenario: same, env: { CUDA_VISIBLE_DEVICES: '1' } });
    expect(hasGpu).toBe(true);
    expect(info.deviceOrderCertain).toBe(true);
    expect(info.devices.map((d: any) => d.uuid)).toEqual(['GPU-99999999-8888-7777-6666-555555555555']);
  });
});

const noDebianNvml = requireSystemTool('nvml-library');
describe.skipIf(noDebianNvml)(
  `Debian's real libnvidia-ml (no driver here)${noDebianNvml ? ` (skipped: ${noDebianNvml})` : ''}`,
  () => {
    it('loads it and reports hasGpu=false with a reason naming the driver', async () => {
      const r = await runScenario(measureWindow, { env: gpuEnv({ TASKMETER_NVML_LIBRARY: debianNvml }) });
      expect(r.code, r.stderr).toBe(0);
      const { usage, record } = lastJson(r.stdout);
      const info = lastJson(
        (await runScenario(readInfo, { env: gpuEnv({ TASKMETER_NVML_LIBRARY: debianNvml }) })).stdout,
      );
      expect(info.hasGpu).toBe(false);
      expect(info.info.library).toBe(debianNvml);
      expect(info.info.reason).toMatch(/driver/i);
      expect(info.info.reason).toMatch(/NVML_ERROR_DRIVER_NOT_LOADED/);
      expect(usage.gpus).toEqual([]);
      expect(usage.gpuMemoryPeakBytes).toBeNull();
      expect(record.gpu_available).toBe(false);
      expectValidRecord(record);
    });
  },
);

describe('windows with a GPU', () => {
  it('report per-GPU peaks, energy and utilization, and the GPU record fields', async () => {
    const { usage, record } = await gpuCase(measureWindow);
    expect(usage.gpus).toHaveLength(2);
    const [g0, g1] = usage.gpus;
    expect(g0).toMatchObject({
      uuid: 'GPU-11111111-2222-3333-4444-555555555555',
      name: 'Fake H100',
      memoryUsedPeakBytes: 2048 * MiB,
      processMemoryPeakBytes: 64 * MiB,
      processMemoryEndBytes: 64 * MiB,
      processMemoryReason: null,
      utilizationAvgPercent: 40,
      error: null,
    });
    // 300 W for ~300 ms ≈ 90 J, from the energy counter
    expect(g0.energyJoules).toBeGreaterThan(0.8 * 300 * (usage.wallTimeMs / 1000));
    expect(g0.energyJoules).toBeLessThan(1.2 * 300 * (usage.wallTimeMs / 1000));
    expect(g1.processMemoryPeakBytes).toBe(0);
    expect(usage.gpuMemoryPeakBytes).toBe(64 * MiB);
    expect(usage.gpuMemoryPeakSource).toBe('process');
    expect(usage.gpuEnergyJoules).toBeCloseTo(g0.energyJoules + g1.energyJoules, 6);
    expect(usage.gpuSamples).toBeGreaterThan(3);
    expect(usage.gpuSampleIntervalMs).toBeGreaterThanOrEqual(10); // the window's interval (stretched only by cost)
    expect(g0.samples).toBe(usage.gpuSamples);
    expect(g0.reasonCode).toBeNull();
    expect(usage.gpuStale).toBe(false);
    expectValidRecord(record);
    expect(record).toMatchObject({
      gpu_available: true,
      gpu_memory_peak_bytes: 64 * MiB,
      gpu_memory_peak_mib: 64,
      gpu_memory_peak_source: 'process',
      gpu_stale: false,
    });
    expect(record.gpu_energy_joules).toBeCloseTo(usage.gpuEnergyJoules, 2);
    expect(record.gpus[0]).toMatchObject({
      uuid: g0.uuid,
      process_memory_peak_bytes: 64 * MiB,
      utilization_avg_percent: 40,
    });
  });

  // The process's GPU memory spikes to 512 MiB for 200 ms inside the window, then falls back to 64 MiB.
  // The process's GPU memory spikes to 512 MiB for 200 ms inside the window (longer, until a reading saw it, on a
  // loaded machine), then falls back to 64 MiB.
  const spike: Scenario = ({ tm, sleep, write, base, MiB, waitFor }) => {
    write(base + `\ndev0.procs=4242:1000,self:${64 * MiB}\n`);
    sleep(100);
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(100);
    write(base + `\ndev0.procs=4242:1000,self:${512 * MiB}\n`);
    sleep(200);
    waitFor(() => t.usage!.gpus[0]?.processMemoryPeakBytes === 512 * MiB);
    write(base + `\ndev0.procs=4242:1000,self:${64 * MiB}\n`);
    sleep(150);
    waitFor(() => t.usage!.gpus[0]?.processMemoryEndBytes === 64 * MiB);
    const usage = t.stop();
    return { usage, record: tm.toRecord(usage) };
  };
  it('a transient spike of the process GPU memory inside a window is its peak', async () => {
    const { usage, record } = await gpuCase(spike);
    expect(usage.gpus[0].processMemoryPeakBytes).toBe(512 * MiB);
    expect(usage.gpus[0].processMemoryEndBytes).toBe(64 * MiB);
    expect(usage.gpuMemoryPeakBytes).toBe(512 * MiB);
    expect(record.gpu_memory_peak_mib).toBe(512);
  });

  // A window opened while a slow GPU reading (each takes 300 ms: the power call sleeps) is in flight: that reading
  // started before the window, and read the device memory as it was then (40 GiB), which the window must not show.
  const openedDuringReading: Scenario = ({ tm, sleep, write, base, MiB }) => {
    sleep(100); // the first reading (asked for right after detection) is in flight; it read 40 GiB at its start
    write(base.replace(/dev0\.used=.*/, `dev0.used=${1024 * MiB}`));
    const { usage } = tm.measureSync(() => sleep(500), { sampleIntervalMs: 10 });
    return { usage };
  };
  it("a GPU reading already in flight when a window opens is not one of the window's samples", async () => {
    const { usage } = await gpuCase(openedDuringReading, {
      scenario: `count=1\ndev0.name=A\ndev0.used=${40 * 1024 * MiB}\ndev0.power_mw=300000\ndelay.nvmlDeviceGetPowerUsage=300\n`,
    });
    expect(usage.gpuSamples).toBeGreaterThanOrEqual(1); // readings that started inside it
    expect(usage.gpus[0].memoryUsedPeakBytes).toBe(1024 * MiB); // never the 40 GiB the earlier one saw
  });

  // Three phases of this process's GPU use (memory, utilization, per-process utilization), a window opened in each,
  // with 300 more windows open all along: each window's figures come from the readings since it opened, whatever
  // else is open (windows that count this process share one computation of them).
  const phases: Scenario = ({ tm, write, base, MiB, waitFor, require }) => {
    const { native } = require('../../dist/binding.js');
    const phase = (procs: number, util: number, putil: string) =>
      write(`${base}\ndev0.procs=self:${procs * MiB}\ndev0.util=${util}\n${putil ? `dev0.putil=${putil}\n` : ''}`);
    const others = Array.from({ length: 300 }, () => native.windowOpen(10));
    const open = () => new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    const putilSamples = (t: any) => t.usage!.gpus[0]?.processUtilizationSamples ?? 0;
    phase(100, 20, 'self:30:10');
    const a = open();
    waitFor(() => a.usage!.gpuSamples >= 3 && putilSamples(a) >= 1);
    phase(300, 80, 'self:70:40');
    const b = open();
    waitFor(() => b.usage!.gpuSamples >= 3 && putilSamples(b) >= 1);
    phase(50, 0, '');
    const c = open();
    waitFor(() => c.usage!.gpuSamples >= 3);
    const buf = new Float64Array(native.WINDOW_SLOTS + 4 * native.GPU_WINDOW_SLOTS);
    for (const id of others) native.windowClose(id, buf);
    return { a: a.stop().gpus[0], b: b.stop().gpus[0], c: c.stop().gpus[0] };
  };
  it('windows opened at different times, with 300 more open, each get only the readings since they opened', async () => {
    const { a, b, c } = await gpuCase(phases, { scenario: 'count=1\ndev0.used=1073741824\n' });
    expect(a.processMemoryPeakBytes).toBe(300 * MiB);
    expect(b.processMemoryPeakBytes).toBe(300 * MiB);
    expect(c.processMemoryPeakBytes).toBe(50 * MiB); // never the 300 MiB from before it opened
    expect(c.processMemoryEndBytes).toBe(50 * MiB);
    expect(c.utilizationAvgPercent).toBe(0);
    expect(b.utilizationAvgPercent).toBeGreaterThan(0);
    expect(b.utilizationAvgPercent).toBeLessThanOrEqual(80);
    expect(a.utilizationAvgPercent).toBeGreaterThanOrEqual(20);
    // per-process utilization: the driver's samples of this process since each window opened
    expect(b.processSmUtilizationPercent).toBe(70);
    expect(b.processMemoryUtilizationPercent).toBe(40);
    expect(a.processSmUtilizationPercent).toBeGreaterThan(30);
    expect(a.processSmUtilizationPercent).toBeLessThan(70);
    expect(c.processSmUtilizationPercent).toBeNull();
    expect(c.processUtilizationSamples).toBe(0);
    expect(a.processUtilizationSamples).toBeGreaterThan(b.processUtilizationSamples);
  });

  // Every device reading takes 200 ms (the memory call sleeps): a 1 ms window opened while one is in flight can hold
  // none, and must not take the latest reading (from before it opened) as its own.
  const short: Scenario = ({ tm, sleep }) => {
    sleep(50);
    const { usage } = tm.measureSync(() => sleep(1));
    return { usage, record: tm.toRecord(usage) };
  };
  it('a window with no GPU reading inside has null memory and utilization with GPU_NOT_SAMPLED, never the latest reading', async () => {
    const { usage, record } = await gpuCase(short, { scenario: BASE + '\ndelay.nvmlDeviceGetMemoryInfo_v2=200\n' });
    expect(usage.gpuSamples).toBe(0);
    const g = usage.gpus[0];
    expect(g).toMatchObject({
      samples: 0,
      reasonCode: 'GPU_NOT_SAMPLED',
      memoryUsedPeakBytes: null,
      utilizationAvgPercent: null,
      processMemoryPeakBytes: null,
      processMemoryReasonCode: 'GPU_NOT_SAMPLED',
      processSamples: 0,
    });
    expect(g.processMemoryReason).toMatch(/^not sampled/);
    expect(usage.gpuMemoryPeakBytes).toBeNull();
    expect(record.gpus[0]).toMatchObject({
      process_memory_peak_bytes: null,
      process_memory_reason_code: 'GPU_NOT_SAMPLED',
      reason_code: 'GPU_NOT_SAMPLED',
      samples: 0,
    });
    expectValidRecord(record);
  });

  it('integrates power where there is no energy counter', async () => {
    const { usage } = await gpuCase(measureWindow, { variant: 'no-energy' });
    const expected = 300 * (usage.wallTimeMs / 1000);
    expect(usage.gpus[0].energyJoules).toBeGreaterThan(0.8 * expected);
    expect(usage.gpus[0].energyJoules).toBeLessThan(1.2 * expected);
    expect(usage.gpus[0].energyReason).toBeNull();
  });
});

describe('versioned symbols and entry layouts', () => {
  for (const [variant, version, entry] of [
    ['full', 3, 24],
    ['no-v3', 2, 24],
    ['v1-only', 1, 16],
  ] as const) {
    it(`reads the process list from the ${variant} build (v${version}, ${entry}-byte entries)`, async () => {
      const { info, snap } = await gpuCase(readInfo, { variant });
      expect(info.processListVersion).toBe(version);
      expect(info.processEntryBytes).toBe(entry);
      expect(snap.gpus[0].processMemoryBytes).toBe(64 * MiB);
      expect(snap.gpus[0].memoryUsedBytes).toBe(2048 * MiB); // memory _v2 → v1 fallback in v1-only
    });
  }

  it('reads the 32-byte _v3 entries that drivers 535.43–535.86 wrote', async () => {
    const { info, snap } = await gpuCase(readInfo, { scenario: BASE + '\ndriver=535.54.03\nv3_entry=32\n' });
    expect(info.processEntryBytes).toBe(32);
    expect(snap.gpus[0].processMemoryBytes).toBe(64 * MiB);
  });

  it('a list in a layout it did not expect is discarded with a reason, never read as garbage', async () => {
    const { snap } = await gpuCase(readInfo, { scenario: BASE + '\ndriver=550.54.15\nv3_entry=32\n' });
    expect(snap.gpus[0].processMemoryBytes).toBeNull();
    expect(snap.gpus[0].processMemoryReason).toMatch(/malformed/);
  });
});

describe('fault matrix: measurement keeps working, with nulls and reasons', () => {
  it('NVML_VALUE_NOT_AVAILABLE for our process → null with the reason', async () => {
    const { usage, record } = await gpuCase(measureWindow, { scenario: BASE.replace(`self:${64 * MiB}`, 'self:na') });
    expect(usage.gpus[0].processMemoryPeakBytes).toBeNull();
    expect(usage.gpus[0].processMemoryReason).toMatch(/NVML_VALUE_NOT_AVAILABLE/);
    // not attributable → the device level, named
    expect(usage.gpuMemoryPeakSource).toBe('device');
    expect(usage.gpuMemoryPeakBytes).toBe(2048 * MiB + 512 * MiB);
    expect(record.gpus[0].process_memory_peak_bytes).toBeNull();
    expectValidRecord(record);
  });

  it('a failing process-list call → null with the reason; the other values stay', async () => {
    const { usage } = await gpuCase(measureWindow, {
      scenario: BASE + '\nfail.nvmlDeviceGetComputeRunningProcesses_v3=3\n',
    });
    expect(usage.gpus[0].processMemoryPeakBytes).toBeNull();
    expect(usage.gpus[0].processMemoryReason).toMatch(/process-list call failed/);
    expect(usage.gpus[0].memoryUsedPeakBytes).toBe(2048 * MiB);
    expect(usage.gpus[0].utilizationAvgPercent).toBe(40);
  });

  it('INSUFFICIENT_SIZE while the list grows between calls → retried, the right value', async () => {
    const { usage } = await gpuCase(measureWindow, { scenario: BASE + '\ndev0.grow=7\n' });
    expect(usage.gpus[0].processMemoryPeakBytes).toBe(64 * MiB);
    expect(usage.gpus[0].processMemoryReason).toBeNull();
  });

  it('pid 0 or memory above the device total in the list → malformed, null', async () => {
    for (const procs of [`0:${MiB},self:${64 * MiB}`, `4242:${200 * 1024 * MiB},self:${64 * MiB}`]) {
      const { usage, record } = await gpuCase(measureWindow, { scenario: BASE + `\ndev0.procs=${procs}\n` });
      expect(usage.gpus[0].processMemoryPeakBytes).toBeNull();
      expect(usage.gpus[0].processMemoryReason).toMatch(/malformed/);
      expectValidRecord(record);
    }
  });

  it('memory used above total is not reported', async () => {
    const { usage } = await gpuCase(measureWindow, { scenario: BASE + `\ndev0.used=${100 * 1024 * MiB}\n` });
    expect(usage.gpus[0].memoryUsedPeakBytes).toBeNull();
  });

  it('a memory _v2 call that fails falls back to v1', async () => {
    const { usage } = await gpuCase(measureWindow, { scenario: BASE + '\nfail.nvmlDeviceGetMemoryInfo_v2=25\n' });
    expect(usage.gpus[0].memoryUsedPeakBytes).toBe(2048 * MiB);
  });

  // Something changes mid-window (the scenario lines in FAULT, `;`-separated), the window goes on.
  const midWindow: Scenario = ({ tm, sleep, write, base, waitFor }) => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(150);
    waitFor(() => t.usage!.gpuSamples > 0); // a reading before the fault (a loaded machine may need longer)
    write(base + '\n' + process.env.FAULT!.replace(/;/g, '\n') + '\n');
    sleep(250);
    const seen = t.usage!.gpuSamples;
    waitFor(() => t.usage!.gpuSamples > seen); // and one after it
    const usage = t.stop();
    // a later window, open until a GPU reading fell inside it (a slow machine may space readings past 100 ms)
    const later = new tm.ResourceTracker().start();
    sleep(100);
    for (const t0 = Date.now(); later.usage!.gpuSamples === 0 && Date.now() - t0 < 5000; ) sleep(10);
    const after = later.stop();
    return { usage, record: tm.toRecord(usage), after, snap: tm.snapshot() };
  };
  it('GPU_IS_LOST mid-window: the window closes, the error is named, later windows work', async () => {
    const { usage, record, after, snap } = await gpuCase(midWindow, { env: { FAULT: 'dev0.lost=1' } });
    expect(usage.gpus[0].error).toMatch(/NVML_ERROR_GPU_IS_LOST/);
    expect(usage.gpus[0].memoryUsedPeakBytes).toBe(2048 * MiB); // readings before the loss are kept
    expect(usage.gpus[1].error).toBeNull();
    expectValidRecord(record);
    expect(record.gpus[0].error).toMatch(/GPU_IS_LOST/);
    expect(after.wallTimeMs).toBeGreaterThan(90);
    expect(after.gpus[0].error).toMatch(/GPU_IS_LOST/);
    expect(after.gpus[0].memoryUsedPeakBytes).toBeNull();
    expect(snap.rssBytes).toBeGreaterThan(0);
  });

  // The counter is read about once a second: the window lasts long enough for readings after the reload. At a 50 ms
  // interval the device readings leave the budget room for that even on a loaded machine (at 10 ms the energy
  // counter is the first reading stretched when wake-ups cost more than usual).
  const reload: Scenario = ({ tm, sleep, write, base, waitFor }) => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 50 }).start();
    sleep(150);
    write(base + '\ndev0.energy_mj=0\n');
    sleep(2500);
    // stretched further on a loaded machine (to 30 s at most): until a counter reading saw the reload
    waitFor(() => /went backwards/.test(t.usage!.gpus[0]?.energyReason ?? ''), 40_000);
    const usage = t.stop();
    return { usage, record: tm.toRecord(usage) };
  };
  it('an energy counter that goes backwards (driver reload) → integrated power for that stretch, with the reason', async () => {
    const { usage, record } = await gpuCase(reload);
    const e = usage.gpus[0].energyJoules;
    expect(e).toBeGreaterThan(0);
    expect(e).toBeLessThan(1.3 * 300 * (usage.wallTimeMs / 1000));
    expect(usage.gpus[0].energyReason).toMatch(/went backwards/);
    expectValidRecord(record);
  });

  it('in its own PID namespace the process memory is null with the reason, and the peak is device-level', async () => {
    // TASKMETER_PID_NAMESPACE=own stands in for a container here (this machine runs in the initial namespace).
    const { usage, record } = await gpuCase(measureWindow, { env: { TASKMETER_PID_NAMESPACE: 'own' } });
    expect(usage.gpus[0].processMemoryPeakBytes).toBeNull();
    expect(usage.gpus[0].processMemoryReason).toMatch(/own PID namespace/);
    expect(usage.gpuMemoryPeakSource).toBe('device');
    expectValidRecord(record);
    const info = await gpuCase(readInfo, { env: { TASKMETER_PID_NAMESPACE: 'own' } });
    expect(info.info.processAttribution).toBe(false);
    expect(info.info.processAttributionReason).toMatch(/own PID namespace/);
    expect(info.info.processAttributionReasonCode).toBe('PROC_PID_NAMESPACE');
    const host = await gpuCase(readInfo, { env: { TASKMETER_PID_NAMESPACE: 'host' } });
    expect(host.info.processAttribution).toBe(true);
    expect(host.info.processAttributionReasonCode).toBeNull();
  });
});

const MIG_UUID = 'MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const MIG = [
  BASE,
  'dev0.mig=1',
  'mig0.parent=0',
  `mig0.uuid=${MIG_UUID}`,
  'mig0.name=Fake H100 MIG 1g.10gb',
  'mig0.gi=3',
  'mig0.ci=0',
  `mig0.total=${10 * 1024 * MiB}`,
  `mig0.used=${3 * 1024 * MiB}`,
  `mig0.procs=4242:${MiB},self:${2 * 1024 * MiB}`,
  'mig1.parent=0',
  'mig1.uuid=MIG-11111111-2222-3333-4444-000000000001',
  'mig1.gi=5',
  'mig1.ci=0',
].join('\n');

describe('MIG slices', () => {
  it("CUDA_VISIBLE_DEVICES=MIG-<uuid>: one device, the slice, with its own memory and this process's memory on it", async () => {
    const { hasGpu, info, snap } = await gpuCase(readInfo, { scenario: MIG, env: { CUDA_VISIBLE_DEVICES: MIG_UUID } });
    expect(hasGpu).toBe(true);
    expect(info.devices).toHaveLength(1);
    expect(info.devices[0]).toMatchObject({
      index: 0,
      uuid: MIG_UUID,
      memoryTotalBytes: 10 * 1024 * MiB,
      mig: {
        parentIndex: 0,
        parentName: 'Fake H100',
        parentUuid: 'GPU-11111111-2222-3333-4444-555555555555',
        gpuInstanceId: 3,
        computeInstanceId: 0,
      },
      accountingMode: null,
      powerReported: null,
    });
    expect(snap.gpus[0]).toMatchObject({
      uuid: MIG_UUID,
      memoryUsedBytes: 3 * 1024 * MiB, // the slice's, not the parent's 2 GiB
      memoryTotalBytes: 10 * 1024 * MiB,
      processMemoryBytes: 2 * 1024 * MiB,
      utilizationPercent: null,
      powerWatts: null,
      energyJoules: null,
      deviceMetricsReason: expect.stringMatching(/MIG slice has no utilization, power or energy/),
    });
  });

  it('accepts the older MIG-GPU-<uuid>/<gi>/<ci> form', async () => {
    const { info } = await gpuCase(readInfo, {
      scenario: MIG,
      env: { CUDA_VISIBLE_DEVICES: 'MIG-GPU-11111111-2222-3333-4444-555555555555/5/0' },
    });
    expect(info.devices.map((d: any) => d.uuid)).toEqual(['MIG-11111111-2222-3333-4444-000000000001']);
  });

  it("a window on a slice: utilization, energy and per-process utilization null with the reason, never the parent's", async () => {
    const { usage, record } = await gpuCase(measureWindow, {
      scenario: MIG + '\ndev0.util=77\ndev0.putil=self:40:10',
      env: { CUDA_VISIBLE_DEVICES: MIG_UUID },
    });
    const g = usage.gpus[0];
    expect(g.memoryUsedPeakBytes).toBe(3 * 1024 * MiB);
    expect(g.processMemoryPeakBytes).toBe(2 * 1024 * MiB);
    expect(g.utilizationAvgPercent).toBeNull();
    expect(g.utilizationNote).toMatch(/MIG slice/);
    expect(g.energyJoules).toBeNull();
    expect(g.energyReason).toMatch(/MIG slice/);
    expect(g.processSmUtilizationPercent).toBeNull();
    expect(g.processUtilizationReason).toMatch(/MIG slice/);
    expect(record.gpus[0].mig_parent_index).toBe(0);
    expectValidRecord(record);
  });

  it('without CUDA_VISIBLE_DEVICES a GPU in MIG mode is seen as its slices, and a slice where we are in no list is null, not 0', async () => {
    const { info, snap } = await gpuCase(readInfo, { scenario: MIG });
    expect(info.devices.map((d: any) => d.uuid)).toEqual([
      MIG_UUID,
      'MIG-11111111-2222-3333-4444-000000000001',
      'GPU-99999999-8888-7777-6666-555555555555',
    ]);
    expect(snap.gpus[1].processMemoryBytes).toBeNull();
    expect(snap.gpus[1].processMemoryReason).toMatch(/does not prove 0 bytes/);
  });
});

describe('MIG slices without privileges', () => {
  it("an unprivileged user's slice: process memory null with the permission reason, the slice's memory still read", async () => {
    const { snap } = await gpuCase(readInfo, {
      scenario: MIG + '\nfail.nvmlDeviceGetComputeRunningProcesses_v3=4\n',
      env: { CUDA_VISIBLE_DEVICES: MIG_UUID },
    });
    expect(snap.gpus[0].memoryUsedBytes).toBe(3 * 1024 * MiB);
    expect(snap.gpus[0].processMemoryBytes).toBeNull();
    expect(snap.gpus[0].processMemoryReason).toMatch(/process-list call failed/);
  });
});

describe('accounting mode', () => {
  // The accounting read fails up to and into the window, then reads a lifetime maximum (512 MiB) from before it.
  const accountingFailedBefore: Scenario = ({ tm, sleep, write, base, MiB, waitFor }) => {
    const outer = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start(); // keeps the GPU readings going
    write(base + `\ndev0.acct=self:${512 * MiB}\nfail.nvmlDeviceGetAccountingStats=999\n`);
    sleep(150);
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(100);
    waitFor(() => t.usage!.gpuSamples > 0); // a failed read inside the window first
    write(base + `\ndev0.acct=self:${512 * MiB}\n`);
    sleep(200);
    const seen = t.usage!.gpuSamples;
    waitFor(() => t.usage!.gpuSamples > seen + 1); // then successful ones
    const usage = t.stop();
    outer.stop();
    return { usage };
  };
  it('a failed accounting read before the window is no base of 0: the lifetime maximum from before is no rise', async () => {
    const { usage } = await gpuCase(accountingFailedBefore, { scenario: BASE + '\ndev0.accounting=1\n' });
    const g = usage.gpus[0];
    expect(g.processMemoryPeakSource).toBe('sampled');
    expect(g.processMemoryPeakBytes).toBe(64 * MiB);
  });
  // The process list always says 64 MiB; the driver's accounting maximum rises to 512 MiB mid-window (an allocation
  // spike between two list readings) — and a second window where it does not rise.
  const accountingSpike: Scenario = ({ tm, sleep, write, base, MiB, waitFor }) => {
    write(base + `\ndev0.acct=self:${64 * MiB}\n`);
    sleep(100);
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(150);
    waitFor(() => t.usage!.gpuSamples > 0); // the base read inside the window
    write(base + `\ndev0.acct=self:${512 * MiB}\n`);
    sleep(150);
    const seen = t.usage!.gpuSamples;
    waitFor(() => t.usage!.gpuSamples > seen + 1); // and the rise read
    const usage = t.stop();
    const f = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(200);
    waitFor(() => f.usage!.gpuSamples > 1);
    const flat = f.stop();
    return { usage, record: tm.toRecord(usage), flat, info: tm.gpuInfo() };
  };
  it('reports a GPU spike that no process-list sample saw as the exact window peak', async () => {
    const { usage, record, flat, info } = await gpuCase(accountingSpike, {
      scenario: BASE + '\ndev0.accounting=1\n',
    });
    expect(info.devices[0]).toMatchObject({ accountingMode: 'enabled', accountingHint: null });
    const g = usage.gpus[0];
    expect(g.processMemoryEndBytes).toBe(64 * MiB); // what every list reading said
    expect(g.processMemoryPeakBytes).toBe(512 * MiB);
    expect(g.processMemoryPeakSource).toBe('accounting');
    expect(usage.gpuMemoryPeakSource).toBe('accounting');
    expect(record.gpu_memory_peak_source).toBe('accounting');
    expect(record.gpus[0].process_memory_peak_source).toBe('accounting');
    expectValidRecord(record);
    // no rise inside the next window: the sampled peak
    expect(flat.gpus[0].processMemoryPeakBytes).toBe(64 * MiB);
    expect(flat.gpus[0].processMemoryPeakSource).toBe('sampled');
  });

  it('when disabled, gpuInfo() says so and how to enable it', async () => {
    const { info } = await gpuCase(readInfo);
    expect(info.devices[0].accountingMode).toBe('disabled');
    expect(info.devices[0].accountingHint).toMatch(/nvidia-smi -am 1/);
  });
});

describe('MPS, entry layouts by symbols, stride check', () => {
  it("an MPS client's memory is found in the MPS list, never 0", async () => {
    const scenario = BASE.replace(/dev0\.procs=.*/, `dev0.procs=4242:${100 * MiB}\ndev0.mps=self:${96 * MiB}`);
    const { snap } = await gpuCase(readInfo, { scenario });
    expect(snap.gpus[0].processMemoryBytes).toBe(96 * MiB);
    expect(snap.gpus[1].processMemoryBytes).toBe(0); // in no list, MPS list read, no MIG: certainly 0
  });

  it('in no list and no MPS list to check: null with the reason, never 0', async () => {
    const scenario = BASE.replace(/dev0\.procs=.*/, `dev0.procs=4242:${100 * MiB}`) + '\nmps_list=0\n';
    const { snap } = await gpuCase(readInfo, { scenario });
    expect(snap.gpus[0].processMemoryBytes).toBeNull();
    expect(snap.gpus[0].processMemoryReason).toMatch(/no MPS client list/);
  });

  it('detects the 32-byte _v3 entries by symbols, whatever the version string says (Windows numbering)', async () => {
    const { info, snap } = await gpuCase(readInfo, {
      variant: 'wide-v3-symbols',
      scenario: BASE + '\ndriver=536.25\nv3_entry=32\n',
    });
    expect(info.processEntryBytes).toBe(32);
    expect(snap.gpus[0].processMemoryBytes).toBe(64 * MiB);
  });

  it('instance ids other than 0xFFFFFFFF on a GPU without MIG mean a wrong stride: discarded with the reason', async () => {
    const { snap } = await gpuCase(readInfo, { scenario: BASE + '\ndev0.instance_ids=7\n' });
    expect(snap.gpus[0].processMemoryBytes).toBeNull();
    expect(snap.gpus[0].processMemoryReason).toMatch(/malformed/);
  });
});

describe('per-process utilization, power, energy', () => {
  // Per-process utilization is read about once a second per GPU (it costs ~2 ms on an H200; the driver keeps the
  // samples in between): a window of 1.5 s holds a reading of each GPU (at a 50 ms interval, which leaves the budget
  // room for it even on a loaded machine).
  const putilWindow: Scenario = ({ tm, sleep, waitFor }) => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 50 }).start();
    sleep(1500);
    // on a loaded machine the readings may be stretched further: until each GPU had one inside the window
    waitFor(
      () =>
        t.usage!.gpus.every(
          (g: any) => g.processUtilizationReason === null || /no sample/.test(g.processUtilizationReason),
        ),
      15_000,
    );
    const usage = t.stop();
    return { usage, record: tm.toRecord(usage) };
  };
  it("reports this process's SM and memory utilization averaged over the window, in usage and record", async () => {
    const { usage, record } = await gpuCase(putilWindow, { scenario: BASE + '\ndev0.putil=self:35:12,4242:50:20\n' });
    expect(usage.gpus[0].processSmUtilizationPercent).toBe(35);
    expect(usage.gpus[0].processMemoryUtilizationPercent).toBe(12);
    expect(usage.gpus[0].processUtilizationSamples).toBeGreaterThanOrEqual(3); // the driver's 100 ms samples
    // asked, and no sample of ours on that GPU: null (the driver samples only processes that ran kernels), as
    // nvidia-smi pmon shows '-'; the mean over GPUs is over those that report one
    expect(usage.gpus[1].processSmUtilizationPercent).toBeNull();
    expect(usage.gpus[1].processUtilizationReason).toMatch(/no sample of the window's processes/);
    expect(usage.gpuProcessUtilizationPercent).toBe(35);
    expect(record.gpus[0].process_sm_utilization_percent).toBe(35);
    expect(record.gpu_process_utilization_percent).toBe(35);
    expectValidRecord(record);
  });

  it('prefers instant power (NVML_FI_DEV_POWER_INSTANT) and says which power it reports', async () => {
    const { info, snap } = await gpuCase(readInfo, {
      scenario: BASE + '\npower_instant=1\ndev0.power_instant_mw=250000\n',
    });
    expect(info.devices[0].powerReported).toBe('instant');
    expect(snap.gpus[0]).toMatchObject({ powerWatts: 250, powerSource: 'instant' });
    const avg = await gpuCase(readInfo);
    expect(avg.snap.gpus[0]).toMatchObject({ powerWatts: 300, powerSource: 'average' });
  });

  it('flags the utilization of a window shorter than the driver sample period', async () => {
    const { usage } = await gpuCase(measureWindow);
    expect(usage.gpus[0].utilizationNote).toMatch(/sample period/);
  });

  // The energy counter is missing for a stretch mid-window, then back: no interval may be counted twice.
  const energyGap: Scenario = ({ tm, sleep, write, base }) => {
    sleep(100);
    const { usage } = tm.measureSync(
      () => {
        sleep(150);
        write(base + '\nfail.nvmlDeviceGetTotalEnergyConsumption=3\n');
        sleep(200);
        write(base + '\n');
        sleep(250);
      },
      { sampleIntervalMs: 10 },
    );
    return { usage };
  };
  it('an energy counter missing for a stretch is integrated from power once, never counted twice', async () => {
    const { usage } = await gpuCase(energyGap, { scenario: BASE });
    const expected = (300 * usage.wallTimeMs) / 1000; // the fake's counter advances at 300 W
    expect(usage.gpus[0].energyJoules).toBeGreaterThan(expected * 0.8);
    expect(usage.gpus[0].energyJoules).toBeLessThan(expected * 1.2);
  });
});

// A real container's PID namespace: `unshare --pid --fork --mount-proc` (needs root or user namespaces). The fake's
// "self" is the pid the child sees, as a translating driver reports it.
const canUnshare = (() => {
  try {
    require('node:child_process').execFileSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], {
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
})();
async function inPidNamespace(scenarioText: string, extra: Record<string, string> = {}): Promise<any> {
  const env = gpuEnv({
    TASKMETER_NVML_LIBRARY: fakeNvml('full'),
    FAKE_NVML_SCENARIO: scenarioFile(scenarioText),
    ...extra,
  });
  const r = await runScenario(measureWindow, { env, wrapper: ['unshare', '--pid', '--fork', '--mount-proc'] });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return lastJson(r.stdout);
}

describe.skipIf(!canUnshare)(
  'in a new PID namespace (unshare --pid; skipped: unshare needs root or user namespaces)',
  () => {
    const own = (driver: string, procs: string) =>
      BASE.replace(/dev0\.procs=.*/, `dev0.procs=${procs}`) + `\ndriver=${driver}\n`;

    it("a driver ≥ 565.57 translates PIDs and memory: this process's GPU memory is attributed", async () => {
      const { pid, usage, record } = await inPidNamespace(own('570.86.15', `self:${64 * MiB}`));
      expect(pid).toBeLessThan(10); // really in a fresh namespace
      expect(usage.gpus[0].processMemoryPeakBytes).toBe(64 * MiB);
      expect(usage.gpuMemoryPeakSource).toBe('process');
      expectValidRecord(record);
    });

    it('a driver 535.113–565.56 (550.x) translates PIDs but not memory: null with that reason', async () => {
      const { usage, info } = await inPidNamespace(own('550.54.15', `self:${64 * MiB}`));
      expect(usage.gpus[0].processMemoryPeakBytes).toBeNull();
      expect(usage.gpus[0].processMemoryReason).toMatch(/535\.113 to 565\.56/);
      expect(info).toMatchObject({
        processAttribution: false,
        processAttributionReasonCode: 'PROC_NS_MEMORY_NOT_MATCHED',
      });
    });

    it('a ≥ 565.57 driver that still lists host PIDs fails the /proc check: null, a host PID equal to ours never read as ours', async () => {
      const { usage } = await inPidNamespace(own('570.86.15', `4242:${100 * MiB},self:${64 * MiB}`));
      expect(usage.gpus[0].processMemoryPeakBytes).toBeNull();
      expect(usage.gpus[0].processMemoryReason).toMatch(/does not exist here/);
    });

    it('an older driver reports host PIDs: null with the reason; TASKMETER_PID_NAMESPACE=host still overrides', async () => {
      const { usage } = await inPidNamespace(own('530.30.02', `self:${64 * MiB}`));
      expect(usage.gpus[0].processMemoryPeakBytes).toBeNull();
      expect(usage.gpus[0].processMemoryReason).toMatch(/own PID namespace/);
      const declared = await inPidNamespace(own('530.30.02', `self:${64 * MiB}`), { TASKMETER_PID_NAMESPACE: 'host' });
      expect(declared.usage.gpus[0].processMemoryPeakBytes).toBe(64 * MiB);
    });
  },
);

describe('a hanging NVML call', () => {
  it('a second detection in the same process starts afresh: a failed one reports no driver version from the first', async () => {
    const scenario = writeFakeNvmlScenario(work, BASE);
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
    const r = await runChild('gpu-slow-detect.cjs', ['redetect'], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const [first, second] = lastJson(r.stdout).infos;
    expect(first.available).toBe(true);
    expect(first.driverVersion).not.toBeNull();
    expect(second.available).toBe(false);
    expect(second.driverVersion).toBeNull();
    expect(second.nvmlVersion).toBeNull();
  });
  it('slow detection is not a hung driver: the last environment ending during a 800 ms nvmlInit leaves the GPU usable', async () => {
    const scenario = writeFakeNvmlScenario(work, `${BASE}\ninit_delay_ms=800\n`);
    // the second worker waits for detection at import (the first one, terminated at once, did not wait)
    const env = gpuEnv({
      TASKMETER_NVML_LIBRARY: fakeNvml('full'),
      FAKE_NVML_SCENARIO: scenario,
      TASKMETER_GPU_DETECT_TIMEOUT_MS: '5000',
    });
    const r = await runChild('gpu-slow-detect.cjs', [], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.info.available, JSON.stringify(out.info)).toBe(true);
    expect(out.info.reasonCode).toBeNull();
    expect(out.hasGpu).toBe(true);
    expect(out.gpus).toHaveLength(2);
    expect(out.gpus[0].processMemoryPeakBytes).toBe(64 * MiB);
  });
  // A process-list call that hangs for seconds: the JS thread must not wait on it.
  const hang: Scenario = ({ tm, sleep, write, base }) => {
    sleep(100); // detection and the first reading done
    write(base + '\ndelay.nvmlDeviceGetComputeRunningProcesses_v3=3000\n');
    const long = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(1300); // the GPU thread is now stuck in the call
    const t0 = performance.now();
    const quick = tm.measureSync(() => 0);
    const quickMs = performance.now() - t0;
    const t1 = performance.now();
    const snap = tm.snapshot();
    const snapMs = performance.now() - t1;
    const usage = long.stop();
    return { quickMs, snapMs, quick: quick.usage, usage, record: tm.toRecord(usage), snapAge: snap.gpus[0]?.ageMs };
  };
  it('never stalls the JS thread; the window says its GPU data is stale; exit stays prompt', async () => {
    const r = await gpuCase(hang, { env: { EXIT_NOW: '1' }, timeoutMs: 15_000 });
    expect(r.quickMs).toBeLessThan(500); // bench: well under 50 ms
    expect(r.snapMs).toBeLessThan(100);
    expect(r.usage.gpuStale).toBe(true);
    expect(r.usage.gpuStaleReason).toMatch(/had not returned/);
    expect(r.record.gpu_stale).toBe(true);
    expectValidRecord(r.record);
    expect(r.snapAge).toBeGreaterThan(1000); // the cache says how old it is
    // the child slept 1.4 s, then exited with the GPU thread still stuck for ~1.6 s more
    expect(r.elapsedMs).toBeLessThan(1400 + 2500);
  });
});

describe('environment variables are read on the JS thread', () => {
  it('no GPU code calls getenv except ReadEnv, which the addon calls at load (getenv races with process.env writes)', () => {
    const src = (f: string) => readFileSync(join(__dirname, '..', f), 'utf8');
    const loader = src('native/nvml/loader.cc');
    const readEnv = /Env ReadEnv\(\) \{[\s\S]*?\n\}/.exec(loader);
    expect(readEnv).not.toBeNull();
    expect(loader.replace(readEnv![0], '')).not.toMatch(/getenv/);
    for (const f of ['native/nvml/gpu.cc', 'native/gpu_window.cc', 'native/gpu_sampler.cc'])
      expect(src(f)).not.toMatch(/getenv/);
    // The sampler takes the environment through Retain (sampler.h, L8), read by the addon on its JS thread.
    expect(src('native/sampler.cc')).not.toMatch(/getenv/);
    expect(src('native/addon.cc')).toMatch(/Sampler::Instance\(\)\.Retain\(nvml::ReadEnv\(\)\)/);
  });

  // process.env written on the JS thread while the GPU thread reads: the GPU side uses what was set at load.
  const lateEnv: Scenario = ({ tm, sleep }) => {
    for (let i = 0; i < 2000; i++) process.env.CUDA_VISIBLE_DEVICES = i % 2 ? 'GPU-9999' : '';
    const { usage } = tm.measureSync(() => sleep(100), { sampleIntervalMs: 10 });
    return { info: tm.gpuInfo(), usage };
  };
  it('a CUDA_VISIBLE_DEVICES set after loading changes nothing (read once, at load)', async () => {
    const { info } = await gpuCase(lateEnv, { env: { CUDA_VISIBLE_DEVICES: 'GPU-1111' } });
    expect(info.devices.map((d: any) => d.uuid)).toEqual(['GPU-11111111-2222-3333-4444-555555555555']);
  });
});

describe('the JS thread never calls NVML', () => {
  it('every NVML call comes from the GPU thread', async () => {
    const log = join(work, 'calls.log');
    const { pid } = await gpuCase(measureWindow, { env: { FAKE_NVML_LOG: log } });
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.some((l) => l.endsWith(' nvmlInit_v2'))).toBe(true);
    expect(lines.some((l) => l.endsWith(' nvmlDeviceGetComputeRunningProcesses_v3'))).toBe(true);
    const tids = new Set(lines.map((l) => Number(l.split(' ')[0])));
    // One thread made every call, and it is not the JS thread (whose tid is the process id).
    expect(tids.size).toBe(1);
    expect(tids.has(pid)).toBe(false);
  });
});
