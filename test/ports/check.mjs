// Run by `npm run test:ports` inside a scratch app that installed the packed tarball, on an emulated platform:
// arm64 Node under qemu-user, Windows Node under Wine. Writes its results to a file (Node's stdout to a pipe fails
// under Wine), which scripts/test-ports.mjs asserts on:
//   node check.mjs <mode> <results.json> [probe]
//   mode core:  the runtime smoke checks, the core API, a process tree, a command; records for the schema check
//   mode gpu:   the GPU path against the fake NVML named by TASKMETER_NVML_LIBRARY (+ FAKE_NVML_SCENARIO)
//   mode win32: measureCommand's Windows mechanics (job object, exit codes, stdio, quoting); probe = injob.exe
// With TASKMETER_PORTS_REAL=1 (real Windows, .github/workflows/prebuild.yml) the job's numbers are asserted too:
// Wine's job accounting reports zeros, so under Wine only the mechanics are.
// Exits 1 if any check failed.
// Each check records what it saw (`seen`) so that the assertions on the host can say what went wrong.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import * as tm from 'taskmeter';

const require = createRequire(import.meta.url);
const [mode, outFile, probe] = process.argv.slice(2);
const win = process.platform === 'win32';
const result = { mode, platform: process.platform, arch: process.arch, node: process.version, checks: [], records: [] };
const save = () => writeFileSync(outFile, JSON.stringify(result, null, 1));
async function check(name, fn) {
  try {
    const seen = await fn();
    result.checks.push({ name, ok: true, seen: seen ?? null });
  } catch (e) {
    result.checks.push({ name, ok: false, seen: String(e?.stack ? e.stack : e).slice(0, 800) });
  }
  save();
}
const assert = (c, m) => {
  if (!c) throw new Error(m);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const node = process.execPath;
const real = process.env.TASKMETER_PORTS_REAL === '1';

if (mode === 'core') {
  await check('esm import + snapshot', () => {
    const s = tm.snapshot();
    assert(s.rssBytes > 0 && s.cpuUserMs >= 0 && s.peakRssBytes > 0, JSON.stringify(s));
    return s;
  });
  await check('cjs require is the same module', () => {
    const c = require('taskmeter');
    assert(typeof c.measureSync === 'function' && c.snapshot().rssBytes > 0, 'cjs');
    return Object.keys(c).length;
  });
  await check('no GPU: hasGpu false with the reason', () => {
    const g = tm.gpuInfo();
    assert(
      tm.hasGpu === false && g.available === false && typeof g.reason === 'string' && g.reason.length > 10,
      JSON.stringify(g),
    );
    return g.reason;
  });
  await check('measureSync sees a 64 MiB buffer in the peak', () => {
    const { usage } = tm.measureSync(() => Buffer.alloc(64 << 20, 1).length);
    assert(
      usage.peakRssBytes >= usage.rssStartBytes + (60 << 20),
      `peak ${usage.peakRssBytes} start ${usage.rssStartBytes}`,
    );
    result.records.push(tm.toRecord(usage, { name: 'measureSync' }));
    return { peak: usage.peakRssBytes, start: usage.rssStartBytes, source: usage.peakRssSource };
  });
  await check('measure (async) samples while it waits', async () => {
    const { usage } = await tm.measure(() => sleep(200), { sampleIntervalMs: 5 });
    assert(usage.wallTimeMs >= 190 && usage.samples >= 3, `wall ${usage.wallTimeMs} samples ${usage.samples}`);
    result.records.push(tm.toRecord(usage));
    return { wall: usage.wallTimeMs, samples: usage.samples };
  });
  await check('ResourceTracker start/stop + toRecord', async () => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += i;
    await sleep(30);
    const usage = t.stop();
    assert(usage.wallTimeMs >= 25 && x > 0, `wall ${usage.wallTimeMs}`);
    const rec = tm.toRecord(usage, { name: 'tracker' });
    assert(rec.schema_version === tm.RECORD_SCHEMA_VERSION && rec.gpu_available === false, JSON.stringify(rec));
    result.records.push(rec);
    return { wall: usage.wallTimeMs, cpu: usage.cpuTimeMs };
  });
  await check('worker_threads load the addon too', async () => {
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
  await check('measureCommand: exit code and exact CPU source', async () => {
    const r = win
      ? await tm.measureCommand('cmd.exe', ['/c', 'exit 7'])
      : await tm.measureCommand('/bin/sh', ['-c', 'exit 7']);
    assert(
      r.exitCode === 7 && r.signal === null && r.usage.cpuSource === 'rusage',
      JSON.stringify({ code: r.exitCode, src: r.usage.cpuSource }),
    );
    result.records.push(tm.toRecord(r.usage, { name: 'command' }));
    return { code: r.exitCode, wall: r.usage.wallTimeMs };
  });
  if (!win) {
    // The exec helper ships beside the prebuilt addon (<addon>-exec) and measureCommand uses it: the command is
    // forked from the small helper, so the kernel's ru_maxrss is the command's own ('rusage'), far below Node's.
    await check('measureCommand(/bin/true) gets its max RSS from the shipped exec helper', async () => {
      const dir = join(process.cwd(), 'node_modules/taskmeter/prebuilds', `${process.platform}-${process.arch}`);
      const helpers = readdirSync(dir).filter((f) => f.endsWith('-exec'));
      assert(helpers.length > 0, `no exec helper in ${dir}: ${readdirSync(dir).join(', ')}`);
      const r = await tm.measureCommand('/bin/true');
      const u = r.usage;
      const ours = tm.snapshot().rssBytes;
      assert(
        r.exitCode === 0 && u.maxRssSource === 'rusage' && u.maxRssBytes > 0 && u.maxRssBytes < ours,
        JSON.stringify({ code: r.exitCode, max: u.maxRssBytes, src: u.maxRssSource, ours }),
      );
      result.records.push(tm.toRecord(u, { name: 'true' }));
      return {
        helpers,
        via: process.env.TASKMETER_EXEC_HELPER ?? null,
        maxRssBytes: u.maxRssBytes,
        nodeRssBytes: ours,
      };
    });
  }
  await check('trackProcess follows descendants (a child and its grandchild)', async () => {
    // A child that starts a grandchild; both live ~3 s. The tree must hold both.
    const child = win
      ? spawn(
          node,
          ['-e', "require('child_process').spawnSync(process.execPath, ['-e', 'setTimeout(() => {}, 3000)'])"],
          { stdio: 'ignore' },
        )
      : spawn('/bin/sh', ['-c', 'sleep 3 & wait'], { stdio: 'ignore' });
    await sleep(win ? 1500 : 500);
    const tracker = tm.trackProcess(child.pid, { sampleIntervalMs: 20 });
    await sleep(600);
    const usage = tracker.stop();
    child.kill();
    assert(usage.processes >= 2, `processes ${usage.processes}`);
    return { processes: usage.processes, treePeak: usage.treePeakRssBytes };
  });
} else if (mode === 'gpu') {
  await check('fake NVML: hasGpu and gpuInfo', () => {
    const g = tm.gpuInfo();
    assert(
      tm.hasGpu === true && g.available && g.devices.length === 1 && g.devices[0].name === 'Fake GH200',
      JSON.stringify(g),
    );
    return { library: g.library, devices: g.devices, driver: g.driverVersion };
  });
  await check('snapshot().gpus reads the device', () => {
    const s = tm.snapshot();
    assert(s.gpus.length === 1 && s.gpus[0].memoryUsedBytes === 3 * 2 ** 30, JSON.stringify(s.gpus));
    return s.gpus[0];
  });
  await check('a window gets GPU peaks, energy and this process’s GPU memory', async () => {
    const { usage } = await tm.measure(() => sleep(400), { sampleIntervalMs: 10 });
    const g = usage.gpus[0];
    assert(g && g.memoryUsedPeakBytes === 3 * 2 ** 30, JSON.stringify(g));
    assert(
      g.processMemoryPeakBytes === 96 * 2 ** 20,
      `process memory ${g.processMemoryPeakBytes} (${g.processMemoryReason})`,
    );
    assert(g.energyJoules !== null && g.energyJoules >= 0, `energy ${g.energyJoules}`);
    result.records.push(tm.toRecord(usage, { name: 'gpu window' }));
    return g;
  });
} else if (mode === 'win32') {
  const exitOf = async (cmd) => (await tm.measureCommand('cmd.exe', ['/c', cmd])).exitCode;
  await check('exit codes pass through (0, 3, 255, 70000)', async () => {
    const codes = [
      await exitOf('exit 0'),
      await exitOf('exit 3'),
      await exitOf('exit 255'),
      await exitOf('exit 70000'),
    ];
    assert(JSON.stringify(codes) === '[0,3,255,70000]', JSON.stringify(codes));
    return codes;
  });
  await check('a name without an extension is found through PATH and PATHEXT (cmd → cmd.exe)', async () => {
    const r = await tm.measureCommand('cmd', ['/c', 'exit 4']);
    assert(r.exitCode === 4, JSON.stringify(r.exitCode));
  });
  await check('a Ctrl-C death (STATUS_CONTROL_C_EXIT) reads as SIGINT', async () => {
    const r = await tm.measureCommand('cmd.exe', ['/c', 'exit -1073741510']);
    assert(r.exitCode === null && r.signal === 'SIGINT', JSON.stringify({ code: r.exitCode, signal: r.signal }));
    return r.signal;
  });
  await check("stdio 'inherit' writes to our stdout (a file here); 'ignore' does not", async () => {
    await tm.measureCommand('cmd.exe', ['/c', 'echo passthrough-marker-1']);
    await tm.measureCommand('cmd.exe', ['/c', 'echo ignored-marker-2'], { stdio: 'ignore' });
  });
  await check("stdio 'pipe' returns the command's stdout and stderr, each its own, with the exit code", async () => {
    const r = await tm.measureCommand('cmd.exe', ['/d', '/c', 'echo out-marker& echo err-marker 1>&2& exit 4'], {
      stdio: 'pipe',
    });
    const seen = { code: r.exitCode, stdout: r.stdout?.toString(), stderr: r.stderr?.toString() };
    assert(r.exitCode === 4, JSON.stringify(seen));
    assert(Buffer.isBuffer(r.stdout) && Buffer.isBuffer(r.stderr), JSON.stringify(seen));
    assert(seen.stdout.trim() === 'out-marker' && seen.stderr.trim() === 'err-marker', JSON.stringify(seen));
    return seen;
  });
  await check(
    "stdio 'pipe' drains both streams while the command runs (more than a pipe's buffer on each)",
    async () => {
      // the probe writes 20,000 lines (~130 kB) to stderr before a line to stdout: a reader that waited on stdout first
      // would leave it blocked on the full stderr pipe, forever
      const r = await tm.measureCommand(probe, ['--spew', '20000'], { stdio: 'pipe' });
      const out = r.stdout.toString().split(/\r?\n/).filter(Boolean);
      const err = r.stderr.toString().split(/\r?\n/).filter(Boolean);
      const seen = { code: r.exitCode, outLines: out.length, errLines: err.length, errBytes: r.stderr.length };
      assert(r.exitCode === 0 && out.length === 20000 && err.length === 20000, JSON.stringify(seen));
      assert(out[19999] === 'o20000' && err[19999] === 'e20000', JSON.stringify(seen));
      return seen;
    },
  );
  await check(
    "stdio 'pipe' past maxBuffer rejects with ERR_CHILD_PROCESS_STDIO_MAXBUFFER and the output kept",
    async () => {
      try {
        await tm.measureCommand(probe, ['--spew', '2000'], { stdio: 'pipe', maxBuffer: 1000 });
      } catch (e) {
        const seen = { code: e.code, stderr: e.result?.stderr?.length, stdout: e.result?.stdout?.length };
        assert(e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER' && seen.stderr === 1000, JSON.stringify(seen));
        return seen;
      }
      throw new Error('no error');
    },
  );
  await check('a missing command is ENOENT (the CLI turns it into 127)', async () => {
    try {
      await tm.measureCommand('no-such-command-taskmeter');
    } catch (e) {
      assert(e.code === 'ENOENT', e.code);
      return e.message;
    }
    throw new Error('no error');
  });
  await check('cwd and env options reach the command', async () => {
    const dir = join(process.cwd(), 'ports');
    mkdirSync(dir, { recursive: true });
    const file = join(process.cwd(), 'cwd-env.txt');
    rmSync(file, { force: true });
    const r = await tm.measureCommand('cmd.exe', ['/c', `cd > ${file} & echo %TASKMETER_PORTS_VAR%>> ${file}`], {
      cwd: dir,
      env: { ...process.env, TASKMETER_PORTS_VAR: 'from-env-42' },
    });
    const lines = readFileSync(file, 'utf8').split(/\r?\n/).filter(Boolean);
    assert(
      r.exitCode === 0 && lines[0].toLowerCase() === dir.toLowerCase() && lines[1] === 'from-env-42',
      JSON.stringify(lines),
    );
    return lines;
  });
  await check('a file that is not a program is EACCES (the CLI turns it into 126)', async () => {
    try {
      await tm.measureCommand(join(process.cwd(), 'package.json'));
    } catch (e) {
      assert(e.code === 'EACCES', `${e.code}: ${e.message}`);
      return e.message;
    }
    throw new Error('no error');
  });
  await check('arguments reach the child exactly (MSVC command-line quoting)', async () => {
    const args = [
      'plain',
      'two words',
      '',
      'quote"inside',
      'trail\\',
      'trail space\\',
      'back\\\\"slash',
      '\\\\server\\share',
      'tab\there',
      '%PATH%',
      'a&b|c',
      'ünï©ødé',
    ];
    const file = join(process.cwd(), 'argv.json');
    rmSync(file, { force: true });
    const r = await tm.measureCommand(node, [
      '-e',
      "require('fs').writeFileSync(process.argv[1], JSON.stringify(process.argv.slice(2)))",
      file,
      ...args,
    ]);
    const got = JSON.parse(readFileSync(file, 'utf8'));
    assert(r.exitCode === 0 && JSON.stringify(got) === JSON.stringify(args), `got ${JSON.stringify(got)}`);
    return got;
  });
  await check('every descendant starts in the command’s job object', async () => {
    const a = join(process.cwd(), 'injob-a.txt');
    const b = join(process.cwd(), 'injob-b.txt');
    const c = join(process.cwd(), 'injob-control.txt');
    for (const f of [a, b, c]) rmSync(f, { force: true });
    // cmd.exe parses its own command line (not by the MSVC rules): the paths here have no spaces, so no quotes
    const r = await tm.measureCommand('cmd.exe', ['/c', `${probe} ${a} & cmd.exe /c ${probe} ${b}`]);
    // control: started by Node (libuv) detached, i.e. outside any job
    const ctl = spawn(probe, [c], { detached: true, stdio: 'ignore' });
    await new Promise((res) => ctl.on('exit', res));
    const seen = {
      pid: r.pid,
      a: readFileSync(a, 'utf8').trim(),
      b: readFileSync(b, 'utf8').trim(),
      control: readFileSync(c, 'utf8').trim(),
    };
    assert(/in_job=1/.test(seen.a) && /in_job=1/.test(seen.b) && /in_job=0/.test(seen.control), JSON.stringify(seen));
    assert(seen.a.includes(`parent=${r.pid} `), `a's parent is the command: ${JSON.stringify(seen)}`);
    return seen;
  });
  await check('a tree of processes is sampled (ppid on Windows) and its CPU comes from the job', async () => {
    const r = await tm.measureCommand(
      node,
      [
        '-e',
        "const t = Date.now(); while (Date.now() - t < 300); require('child_process').spawnSync(process.execPath, ['-e', 'setTimeout(() => {}, 1200)'])",
      ],
      { sampleIntervalMs: 20 },
    );
    const u = r.usage;
    assert(
      r.exitCode === 0 && u.processes >= 2 && u.cpuSource === 'rusage',
      JSON.stringify({ code: r.exitCode, processes: u.processes, src: u.cpuSource }),
    );
    assert(u.wallTimeMs >= 1200, `wall ${u.wallTimeMs}: the command returns only after its 1.2 s grandchild`);
    if (real) {
      // the job's accounting: at least the 300 ms busy loop; commit peaks of a Node process are many MiB
      assert(u.cpuTimeMs >= 250 && u.cpuTimeMs <= u.wallTimeMs * 4, `cpu ${u.cpuTimeMs} wall ${u.wallTimeMs}`);
      assert(
        u.maxRssBytes > 8 * 2 ** 20 && u.treePeakRssBytes >= u.maxRssBytes,
        `maxRss ${u.maxRssBytes} treePeak ${u.treePeakRssBytes}`,
      );
    }
    return {
      processes: u.processes,
      cpuMs: u.cpuTimeMs,
      maxRss: u.maxRssBytes,
      maxRssSource: u.maxRssSource,
      treePeak: u.treePeakRssBytes,
      wall: u.wallTimeMs,
    };
  });
} else {
  throw new Error(`unknown mode ${mode}`);
}
result.done = true;
process.exitCode = result.checks.every((c) => c.ok) ? 0 : 1;
result.prebuildDir = existsSync(join(process.cwd(), 'node_modules/taskmeter/build'))
  ? 'build/ exists: compiled, not prebuilt'
  : 'prebuilds only';
save();
