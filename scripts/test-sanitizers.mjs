// npm run test:asan — the addon built with AddressSanitizer + UndefinedBehaviorSanitizer (cmake-js, build-asan/),
// loaded into node with the ASan runtime preloaded, running the tests that drive the native code (children inherit
// the setup). A finding aborts the process that made it, which fails the test that ran it.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, env) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: env ?? process.env });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run(npm, ['run', 'build:asan']);
run(npm, ['run', 'build:ts']);
const addon = join(root, 'build-asan/Release/taskmeter.node');
if (!existsSync(addon)) throw new Error(`no sanitizer build at ${addon}`);
const libasan = execFileSync('gcc', ['-print-file-name=libasan.so']).toString().trim();
if (!libasan.startsWith('/')) throw new Error('libasan.so not found (gcc -print-file-name=libasan.so)');
const env = {
  ...process.env,
  TASKMETER_ADDON: addon,
  LD_PRELOAD: libasan,
  // Node and V8 are not built with ASan and keep memory until exit by design: leak checks belong to valgrind here.
  // A small quarantine: freed memory goes back to the OS soon, so the peak-memory tests still see it leave.
  ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:handle_segv=1:allow_user_segv_handler=1:quarantine_size_mb=16',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
};
// Not test/soak.test.ts: it measures RSS growth, which ASan's allocator (quarantine, metadata) changes by design;
// it runs without sanitizers in npm test, and its native paths run here through the other files.
const files = [
  'test/core.test.ts',
  'test/gpu.test.ts',
  'test/gpu-lifecycle.test.ts',
  'test/lifecycle.test.ts',
  'test/cli.test.ts',
  'test/exporters.test.ts',
  'test/properties.test.ts',
  'test/process.test.ts',
  'test/command.test.ts',
  'test/counters.test.ts',
  'test/trees.test.ts',
];
run(process.execPath, [join(root, 'node_modules/vitest/vitest.mjs'), 'run', ...files], env);
console.log('test:asan: clean (AddressSanitizer + UndefinedBehaviorSanitizer)');
