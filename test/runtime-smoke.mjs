// The smoke suite of `npm run test:runtimes`: run by each runtime (Node 18–24, Bun) inside an app that installed the
// packed package, prebuild included, with no compiler. Prints one JSON line; exits non-zero on the first failure.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import * as tm from 'taskmeter';

const require = createRequire(import.meta.url);
const checks = [];
async function check(name, fn) {
  try {
    const detail = await fn();
    checks.push({ name, ok: true, detail: detail ?? null });
  } catch (e) {
    checks.push({ name, ok: false, detail: String(e?.stack ? e.stack : e).slice(0, 400) });
  }
}
const assert = (c, m) => {
  if (!c) throw new Error(m);
};

await check('esm import + snapshot', () => {
  const s = tm.snapshot();
  assert(s.rssBytes > 0 && s.cpuUserMs >= 0 && s.peakRssBytes > 0, JSON.stringify(s));
  return `rss ${s.rssBytes}`;
});
await check('cjs require', () => {
  const c = require('taskmeter');
  assert(typeof c.measureSync === 'function' && c.snapshot().rssBytes > 0, 'cjs');
});
await check('measureSync peak', () => {
  const { usage } = tm.measureSync(() => Buffer.alloc(64 << 20, 1).length);
  assert(
    usage.peakRssBytes >= usage.rssStartBytes + (60 << 20),
    `peak ${usage.peakRssBytes} start ${usage.rssStartBytes}`,
  );
  return usage.peakRssSource;
});
await check('measure async + sampler', async () => {
  const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 60)), { sampleIntervalMs: 5 });
  assert(usage.wallTimeMs >= 55 && usage.samples > 3, `wall ${usage.wallTimeMs} samples ${usage.samples}`);
  return `${usage.samples} samples`;
});
await check('ResourceTracker + toRecord', () => {
  const t = new tm.ResourceTracker().start();
  const rec = tm.toRecord(t.stop());
  assert(rec.schema_version === tm.RECORD_SCHEMA_VERSION && rec.gpu_available === tm.hasGpu, 'record');
});
await check('gpuInfo', () => {
  const g = tm.gpuInfo();
  assert(typeof g.available === 'boolean' && (g.available || typeof g.reason === 'string'), 'gpuInfo');
  return g.available ? `${g.devices.length} GPUs` : 'no GPU';
});
await check('measureCommand', async () => {
  const r = await tm.measureCommand('sh', ['-c', 'exit 7']);
  assert(r.exitCode === 7 && r.usage.cpuSource === 'rusage', JSON.stringify(r.exitCode));
  // the prebuilt exec helper ran: the command's own exact peak, not the runtime's
  assert(
    r.usage.maxRssSource === 'rusage' && r.usage.maxRssBytes < 8 * 1024 * 1024,
    `maxRss ${r.usage.maxRssBytes} ${r.usage.maxRssSource}`,
  );
});
await check('worker_threads', async () => {
  const w = new Worker(
    "const { parentPort } = require('node:worker_threads'); const t = require('taskmeter'); parentPort.postMessage(t.measureSync(() => 1).usage.wallTimeMs >= 0);",
    { eval: true },
  );
  const ok = await new Promise((res, rej) => {
    w.on('message', res);
    w.on('error', rej);
  });
  await w.terminate();
  assert(ok === true, 'worker');
});
const runtime = typeof Bun !== 'undefined' ? `bun ${Bun.version}` : `node ${process.version}`;
console.log(JSON.stringify({ runtime, napi: process.versions.napi ?? null, checks }));
process.exitCode = checks.every((c) => c.ok) ? 0 : 1;
