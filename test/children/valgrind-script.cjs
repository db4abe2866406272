// Every native entry point once or a few times, for valgrind memcheck (scripts/test-valgrind.mjs): snapshots,
// windows (RSS and GPU through the fake NVML, timelines, trees), the spawner, worker threads, gpuInfo and errors.
const { Worker, isMainThread, parentPort } = require('node:worker_threads');
const tm = require('../../dist/index.js');
const { native } = require('../../dist/binding.js');

async function main() {
  const s = tm.snapshot();
  if (!(s.rssBytes > 0)) throw new Error('snapshot');
  tm.measureSync(() => 0);
  const t = new tm.ResourceTracker({ sampleIntervalMs: 1, timeline: true }).start();
  await new Promise((r) => setTimeout(r, 80));
  t.usage;
  const u = t.stop();
  tm.toRecord(u);
  tm.renderTimeline(u, { format: 'svg' });
  tm.gpuInfo();
  native.samplerState();
  native.nvmlErrorText(15);
  try {
    native.snapshot(123);
  } catch {}
  try {
    native.windowRead(1, new Float64Array(1));
  } catch {}
  const r = await tm.measureCommand('sh', ['-c', 'echo hi; sleep 0.05'], { stdio: 'pipe', sampleIntervalMs: 2 });
  if (r.stdout.toString() !== 'hi\n') throw new Error('spawn output');
  await tm.measureCommand('no-such-command-xyz').catch(() => {});
  // ending a command's tree (native killTree), a maxBuffer overflow, the I/O bytes of a window (readSelfIo)
  const ended = await tm.measureCommand('sh', ['-c', 'sleep 5 & sleep 5'], { timeout: 200, stdio: 'ignore' });
  if (ended.endedBy !== 'timeout') throw new Error('timeout');
  await tm.measureCommand('yes', [], { stdio: 'pipe', maxBuffer: 4096 }).catch(() => {});
  if (tm.measureSync(() => 0, { ioBytes: true }).usage.ioReadBytes === null) throw new Error('ioBytes');
  try {
    native.readSelfIo(new Float64Array(1));
  } catch {}
  // a tracked tree with a forked child: CPU matching at its departure, storage I/O, a PSS pass
  const { spawn } = require('node:child_process');
  const c = spawn('sh', ['-c', 'sleep 0.3 & sleep 0.3; wait'], { stdio: 'ignore' });
  const pu = await tm.trackProcess(c.pid, { sampleIntervalMs: 2 }).exited;
  tm.toRecord(pu);
  // signals to a command while it runs, then once it has ended
  const { signalCommand } = require('../../dist/process.js');
  let pid = 0;
  const running = tm.measureCommand('sleep', ['5'], { stdio: 'ignore', onSpawn: (p) => (pid = p) });
  if (!signalCommand(pid, 'SIGTERM')) throw new Error('signalCommand while it runs');
  await running;
  if (signalCommand(pid, 'SIGTERM')) throw new Error('signalCommand after its end');
  const w = new Worker(__filename);
  await new Promise((res, rej) => {
    w.on('message', res);
    w.on('error', rej);
  });
  await w.terminate();
  // a window long enough for the GPU thread's energy-counter and per-process utilization readings (paced apart from
  // the device readings) and for window edges
  const long = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
  await new Promise((r) => setTimeout(r, 1500));
  tm.toRecord(long.stop());
  const open = new tm.ResourceTracker().start(); // left open: closed at teardown
  void open;
  console.log(JSON.stringify({ ok: true, gpus: tm.snapshot().gpus.length, samples: u.samples }));
}

if (isMainThread) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  tm.measureSync(() => 1);
  new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
  parentPort.postMessage('ok');
}
