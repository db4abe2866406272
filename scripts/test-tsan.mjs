// npm run test:tsan — the addon built with ThreadSanitizer (cmake-js, build-tsan/), loaded into node with the TSan
// runtime preloaded, running the concurrency tests: worker churn (with and without the fake NVML, with windows open
// on the main thread, with measureCommand and trackProcess running on the main thread), 100 concurrent windows, the
// GPU thread with the fake NVML (test/gpu.test.ts), and the lifecycle cases. Child processes inherit the setup. Every report of every process goes to a log directory; the
// run fails if any report remains after the suppressions in scripts/tsan.supp (Node/V8 internals only, each one
// justified there).
//
// Node itself is not built with TSan. `ignore_noninstrumented_modules=1` makes the runtime ignore the memory
// accesses it intercepts (memcpy, free, …) when they come from uninstrumented code (node, libuv, V8), whose own
// synchronization TSan cannot see; the addon's code is instrumented and fully checked, and so are the mutexes,
// condition variables and thread starts it goes through.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, env) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: env ?? process.env });
  return r.status ?? 1;
};
if (run(npm, ['run', 'build:tsan']) !== 0) process.exit(1);
if (run(npm, ['run', 'build:ts']) !== 0) process.exit(1);
const addon = join(root, 'build-tsan/Release/taskmeter.node');
if (!existsSync(addon)) throw new Error(`no sanitizer build at ${addon}`);
const libtsan = execFileSync('gcc', ['-print-file-name=libtsan.so']).toString().trim();
if (!libtsan.startsWith('/')) throw new Error('libtsan.so not found (gcc -print-file-name=libtsan.so)');

const logs = join(tmpdir(), `taskmeter-tsan-${process.pid}`);
rmSync(logs, { recursive: true, force: true });
mkdirSync(logs, { recursive: true });
const env = {
  ...process.env,
  TASKMETER_ADDON: addon,
  LD_PRELOAD: libtsan,
  TSAN_OPTIONS: [
    'ignore_noninstrumented_modules=1',
    `suppressions=${join(root, 'scripts/tsan.supp')}`,
    `log_path=${join(logs, 'tsan')}`,
    'halt_on_error=0', // collect every report of a run, then fail below
    'second_deadlock_stack=1',
    'history_size=4',
  ].join(' '),
};
// TSan's mappings need the older ASLR layout on kernels with vm.mmap_rnd_bits > 28 (it aborts with "unexpected
// memory mapping"); setarch -R turns address randomization off for the run where that is needed.
let rndBits = 28;
try {
  rndBits = Number(readFileSync('/proc/sys/vm/mmap_rnd_bits', 'utf8'));
} catch {}
const prefix = rndBits > 28 ? ['setarch', [process.arch === 'x64' ? 'x86_64' : 'aarch64', '-R']] : null;
const vitest = [join(root, 'node_modules/vitest/vitest.mjs'), 'run'];
const runVitest = (files, extra = []) =>
  prefix
    ? run(prefix[0], [...prefix[1], process.execPath, ...vitest, ...files, ...extra], env)
    : run(process.execPath, [...vitest, ...files, ...extra], env);

// Not test/cli.test.ts: its GNU-time comparisons run python3, which crashes at start with the TSan runtime preloaded
// (an interpreter not built for it); the spawn and tree-sampling paths run here through the churn file's spawn case.
// Timing bounds written for uninstrumented speed are left out (TSan runs code 5–15× slower): the GPU hang case's
// exit-time bound, and the lifecycle exit-time cases. Everything else in these files runs (test/gpu-lifecycle.test.ts:
// GPU threads that outlive their environment, the next one waiting for them).
const notTimed =
  '^(?!.*(never stalls the JS thread|process.exit\\(\\) with the sampler running|process exit never waits))';
let status = runVitest(['test/lifecycle.test.ts', 'test/gpu.test.ts', 'test/gpu-lifecycle.test.ts'], ['-t', notTimed]);
// Only the concurrency case of the soak file: its RSS-growth case measures the allocator, which TSan replaces.
status ||= runVitest(['test/soak.test.ts'], ['-t', '100 concurrent']);
// The GPU thread's schedule on the fake H200 (window edges, per-kind pacing of 8 GPUs, the energy model): the cases
// that measure in-process windows (the others run commands or python3, see above, or bound exit times).
status ||= runVitest(
  ['test/gpu-h200.test.ts'],
  ['-t', 'never shows memory|2 s window at 300 W|8 H200s|lastSeen|timeline'],
);

const reports = [];
for (const f of readdirSync(logs)) {
  const text = readFileSync(join(logs, f), 'utf8');
  for (const block of text.split(/^={18}$/m)) if (/WARNING: ThreadSanitizer/.test(block)) reports.push(block.trim());
}
if (reports.length > 0) {
  console.error(reports.join('\n\n==================\n'));
  console.error(`test:tsan: ${reports.length} ThreadSanitizer report(s) (logs in ${logs})`);
  process.exit(1);
}
rmSync(logs, { recursive: true, force: true });
if (status !== 0) {
  console.error('test:tsan: tests failed under ThreadSanitizer');
  process.exit(status);
}
console.log('test:tsan: clean (ThreadSanitizer, no reports)');
