// Runs one GPU case against whatever NVML the environment points at (the fake, Debian's real library, none) and
// prints one JSON line. The scenario file (FAKE_NVML_SCENARIO) may be rewritten mid-run to inject faults.
const fs = require('node:fs');
const tm = require('../../dist/index.js');

const scenario = process.env.FAKE_NVML_SCENARIO;
function write(text) {
  // the fake re-reads the file when its mtime or size changes; rename makes the change atomic
  const tmp = `${scenario}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, scenario);
}
function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
const base = scenario && fs.existsSync(scenario) ? fs.readFileSync(scenario, 'utf8') : '';
const MiB = 1024 * 1024;

const cases = {
  info() {
    return { hasGpu: tm.hasGpu, info: tm.gpuInfo(), snap: tm.snapshot() };
  },
  window() {
    const { usage } = tm.measureSync(() => sleep(300), { sampleIntervalMs: 10 });
    return { usage, record: tm.toRecord(usage), snap: tm.snapshot(), info: tm.gpuInfo() };
  },
  short() {
    sleep(50);
    const { usage } = tm.measureSync(() => 0);
    return { usage, record: tm.toRecord(usage) };
  },
  // The process's GPU memory spikes to 512 MiB for 200 ms inside the window, then falls back to 64 MiB.
  spike() {
    write(base + `\ndev0.procs=4242:1000,self:${64 * MiB}\n`);
    sleep(100);
    const { usage } = tm.measureSync(
      () => {
        sleep(100);
        write(base + `\ndev0.procs=4242:1000,self:${512 * MiB}\n`);
        sleep(200);
        write(base + `\ndev0.procs=4242:1000,self:${64 * MiB}\n`);
        sleep(150);
      },
      { sampleIntervalMs: 10 },
    );
    return { usage, record: tm.toRecord(usage) };
  },
  // Accounting mode: the process list always says 64 MiB; the driver's accounting maximum rises to 512 MiB mid-window
  // (an allocation spike between two list readings) — and a second window where it does not rise.
  accountingSpike() {
    write(base + `\ndev0.acct=self:${64 * MiB}\n`);
    sleep(100);
    const { usage } = tm.measureSync(
      () => {
        sleep(150);
        write(base + `\ndev0.acct=self:${512 * MiB}\n`);
        sleep(150);
      },
      { sampleIntervalMs: 10 },
    );
    const flat = tm.measureSync(() => sleep(200), { sampleIntervalMs: 10 });
    return { usage, record: tm.toRecord(usage), flat: flat.usage, info: tm.gpuInfo() };
  },
  // A window opened while a slow GPU reading (300 ms) is in flight: that reading started before the window.
  openedDuringReading() {
    sleep(100); // the first reading (asked for right after detection) is in flight
    const { usage } = tm.measureSync(() => sleep(500), { sampleIntervalMs: 10 });
    return { usage };
  },
  // The accounting read fails up to and into the window, then reads a lifetime maximum (512 MiB) from before it.
  accountingFailedBefore() {
    const outer = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start(); // keeps the GPU readings going
    write(base + `\ndev0.acct=self:${512 * MiB}\nfail.nvmlDeviceGetAccountingStats=999\n`);
    sleep(150);
    const { usage } = tm.measureSync(
      () => {
        sleep(100);
        write(base + `\ndev0.acct=self:${512 * MiB}\n`);
        sleep(200);
      },
      { sampleIntervalMs: 10 },
    );
    outer.stop();
    return { usage };
  },
  // The energy counter is missing for a stretch mid-window, then back: no interval may be counted twice.
  energyGap() {
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
  },
  // Process lists cost 5 ms a call; the device's used memory spikes for 250 ms inside a 1.5 s window.
  costly() {
    sleep(300);
    const { usage } = tm.measureSync(
      () => {
        sleep(600);
        write(base + `\ndev0.used=${40 * 1024 * MiB}\n`);
        sleep(250);
        write(base + '\n');
        sleep(650);
      },
      { sampleIntervalMs: 10 },
    );
    return { usage, record: tm.toRecord(usage) };
  },
  // process.env written on the JS thread while the GPU thread reads: the GPU side uses what was set at load.
  lateEnv() {
    for (let i = 0; i < 2000; i++) process.env.CUDA_VISIBLE_DEVICES = i % 2 ? 'GPU-9999' : '';
    const { usage } = tm.measureSync(() => sleep(100), { sampleIntervalMs: 10 });
    return { info: tm.gpuInfo(), usage };
  },
  // Something changes mid-window (text in FAULT), the window goes on.
  midWindow() {
    const { usage } = tm.measureSync(
      () => {
        sleep(150);
        write(base + '\n' + process.env.FAULT.replace(/;/g, '\n') + '\n');
        sleep(250);
      },
      { sampleIntervalMs: 10 },
    );
    const after = tm.measureSync(() => sleep(100));
    return { usage, record: tm.toRecord(usage), after: after.usage, snap: tm.snapshot() };
  },
  // A process-list call that hangs for seconds: the JS thread must not wait on it.
  hang() {
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
  },
};

const name = process.argv[2];
const result = cases[name]();
console.log(JSON.stringify({ pid: process.pid, ...result }));
if (process.env.EXIT_NOW) process.exit(0);
