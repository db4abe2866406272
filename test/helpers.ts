import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { ValidateFunction } from 'ajv';
import { delimiter, join } from 'node:path';
import { findZig, ZIG_VERSION, zigHome } from '../scripts/zig.mjs';

export const root = join(__dirname, '..');
export const distEntry = join(root, 'dist/index.js');
/** The `taskmeter` command as installed (bin/taskmeter.js). */
export const cliPath = join(root, 'bin/taskmeter.js');

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
  timedOut: boolean;
}

export interface RunOptions {
  /** Killed with SIGKILL after this long (default 20 s); `timedOut` says so. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Default: the repository root. */
  cwd?: string;
  /** Written to the child's stdin (else stdin is /dev/null). */
  input?: string;
}

/** Runs a command with a hard timeout; never rejects. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<ChildResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? root,
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 20_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({
        code: null,
        signal: null,
        stdout,
        stderr: stderr + String(err),
        elapsedMs: performance.now() - started,
        timedOut,
      });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, elapsedMs: performance.now() - started, timedOut });
    });
    if (child.stdin) {
      child.stdin.on('error', () => {}); // a child that exits without reading its input
      child.stdin.end(options.input);
    }
  });
}

/** Runs the `taskmeter` command (bin/taskmeter.js) in a fresh node process; never rejects. */
export function runCli(args: string[], options: RunOptions = {}): Promise<ChildResult> {
  return run(process.execPath, [cliPath, ...args], options);
}

let python3: string | undefined;
/** The real python3 interpreter (sys.executable), not a version-manager shim that would add processes of its own. */
export function python3Path(): string {
  python3 ??= execFileSync('python3', ['-c', 'import sys; print(sys.executable)']).toString().trim();
  return python3;
}

/** Runs a script from test/children/ in a fresh node process. */
export function runChild(
  script: string,
  args: string[] = [],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): Promise<ChildResult> {
  return run(process.execPath, [...(options.nodeArgs ?? []), join(root, 'test/children', script), ...args], options);
}

/** What a scenario gets in its child process (test/children/scenario.cjs). */
export interface ScenarioContext {
  /** taskmeter as a user loads it (dist/index.js), in the child. */
  tm: typeof import('../dist/index.js');
  /** The child's require, resolving from test/children/. */
  require: NodeJS.Require;
  MiB: number;
  /** The fake NVML's scenario file (FAKE_NVML_SCENARIO) as it was when the child started; '' without one. */
  base: string;
  /** Replaces the fake NVML's scenario file atomically (the fake re-reads it when it changes). */
  write(text: string): void;
  /** Blocks the JS thread for `ms` milliseconds. */
  sleep(ms: number): void;
  /** Blocks until pred() holds (checked every 10 ms), at most maxMs (10 s); returns whether it held. */
  waitFor(pred: () => boolean, maxMs?: number): boolean;
}

/**
 * A scenario run in a fresh process: its source is sent to the child, so it may use only `ctx` and globals (no
 * imports or variables of the test file). What it returns is printed as JSON, with the child's `pid`.
 */
export type Scenario<T extends object = object> = (ctx: ScenarioContext) => T | Promise<T>;

/** Runs a scenario in a fresh node process (optionally under a wrapper command such as `unshare`); never rejects. */
export function runScenario(
  scenario: Scenario,
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; wrapper?: string[] } = {},
): Promise<ChildResult> {
  const { wrapper = [], ...rest } = options;
  const args = [join(root, 'test/children/scenario.cjs'), scenario.toString()];
  if (wrapper.length === 0) return run(process.execPath, args, rest);
  return run(wrapper[0], [...wrapper.slice(1), process.execPath, ...args], rest);
}

/** Parses the last JSON line a child printed. */
export function lastJson<T = any>(out: string): T {
  const lines = out
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{') || l.startsWith('['));
  if (lines.length === 0) throw new Error(`no JSON in child output:\n${out}`);
  return JSON.parse(lines[lines.length - 1]) as T;
}

export const MiB = 1024 * 1024;

export const fakeNvmlDir = join(root, 'test/fixtures/fake-nvml/build');
export const fakeNvml = (variant = 'full'): string => join(fakeNvmlDir, `libfake-nvml-${variant}.so`);
/** Debian's real libnvidia-ml1 and NVIDIA's nvml.h, extracted by scripts/system-deps.sh (machine-wide). */
const depsDir = process.env.TASKMETER_DEPS_DIR || join(require('node:os').homedir(), '.cache/taskmeter-deps');
export const debianNvml = join(depsDir, 'nvml/lib/libnvidia-ml.so.1');
export const nvidiaHeaderDir = join(depsDir, 'nvml/include');

/** The system packages some tests need beyond Node and a C++ toolchain (scripts/system-deps.sh installs them all). */
export type SystemTool = 'gnu-time' | 'chromium' | 'nvml-library' | 'nvml-header' | 'mingw-w64' | 'xz' | 'less' | 'zig';

export const INSTALL_SYSTEM_DEPS = 'sudo bash scripts/system-deps.sh';
/** Set by .ci/run: a missing system package fails the run instead of skipping its tests. */
export const REQUIRE_SYSTEM_DEPS = 'TASKMETER_REQUIRE_SYSTEM_DEPS';

/** The first executable called `name` on PATH, or null. */
export function onPath(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {}
  }
  return null;
}

const gnuTimePath = (): string | null => {
  const file = onPath('time');
  if (!file) return null;
  const r = spawnSync(file, ['--version'], { encoding: 'utf8' });
  return /GNU/.test(`${r.stdout}${r.stderr}`) ? file : null;
};

const systemTools: Record<SystemTool, { what: string; find: () => string | null }> = {
  'gnu-time': { what: 'GNU time (`time` on PATH, Debian package time)', find: gnuTimePath },
  chromium: { what: 'Chromium (`chromium` on PATH, Debian package chromium)', find: () => onPath('chromium') },
  'nvml-library': {
    what: `Debian's libnvidia-ml.so.1 in ${debianNvml}`,
    find: () => (existsSync(debianNvml) ? debianNvml : null),
  },
  'nvml-header': {
    what: `NVIDIA's nvml.h in ${nvidiaHeaderDir}`,
    find: () => (existsSync(join(nvidiaHeaderDir, 'nvml.h')) ? join(nvidiaHeaderDir, 'nvml.h') : null),
  },
  'mingw-w64': {
    what: 'mingw-w64 (`x86_64-w64-mingw32-g++-posix` on PATH, Debian package g++-mingw-w64-x86-64-posix)',
    find: () => onPath('x86_64-w64-mingw32-g++-posix'),
  },
  xz: { what: 'xz (`xz` on PATH, Debian package xz-utils)', find: () => onPath('xz') },
  less: { what: 'less (`less` on PATH, Debian package less)', find: () => onPath('less') },
  // the prebuilds' toolchain (scripts/zig.mjs; scripts/system-deps.sh installs it, or `npm run toolchain:zig`)
  zig: { what: `the Zig ${ZIG_VERSION} toolchain (${zigHome()}, \`npm run toolchain:zig\`)`, find: findZig },
};

/** Where a system tool is (its path), or null. */
export function findSystemTool(tool: SystemTool): string | null {
  return systemTools[tool].find();
}

/**
 * Decides whether tests that need `tool` run. Returns null when it is installed, else the skip reason (naming the
 * command that installs it). With TASKMETER_REQUIRE_SYSTEM_DEPS=1 (set by .ci/run) a missing tool throws instead, so
 * CI cannot pass by skipping. Use: `const missing = requireSystemTool('chromium'); it.skipIf(missing)(…)`, or in a
 * test, `ctx.skip(missing !== null, missing ?? '')`.
 */
export function requireSystemTool(tool: SystemTool): string | null {
  if (systemTools[tool].find() !== null) return null;
  const reason = `needs ${systemTools[tool].what}: install with \`${INSTALL_SYSTEM_DEPS}\``;
  if (process.env[REQUIRE_SYSTEM_DEPS] === '1') throw new Error(`${REQUIRE_SYSTEM_DEPS}=1 and a test ${reason}`);
  return reason;
}

/** Every missing system tool with its reason (printed once by the global setup). */
export function missingSystemTools(): { tool: SystemTool; reason: string }[] {
  const out: { tool: SystemTool; reason: string }[] = [];
  for (const tool of Object.keys(systemTools) as SystemTool[]) {
    if (systemTools[tool].find() === null) {
      out.push({ tool, reason: `needs ${systemTools[tool].what}: install with \`${INSTALL_SYSTEM_DEPS}\`` });
    }
  }
  return out;
}

/** An environment for a child: no inherited GPU settings, plus the given ones. */
export function gpuEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of [
    'TASKMETER_NVML_LIBRARY',
    'TASKMETER_DISABLE_GPU',
    'CUDA_VISIBLE_DEVICES',
    'FAKE_NVML_SCENARIO',
    'FAKE_NVML_LOG',
    'TASKMETER_PID_NAMESPACE',
  ]) {
    delete env[k];
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

let scenarioFiles = 0;
/** Writes a new fake NVML scenario file (test/fixtures/fake-nvml) holding `text` in `dir`; returns its path. */
export function writeFakeNvmlScenario(dir: string, text: string): string {
  const file = join(dir, `scenario-${process.pid}-${scenarioFiles++}.txt`);
  writeFileSync(file, text);
  return file;
}

/** A real JSON Schema validator (ajv, draft 2020-12) for schema/record.schema.json. */
export function recordValidator(): ValidateFunction {
  const Ajv2020 = require('ajv/dist/2020').default;
  const addFormats = require('ajv-formats').default;
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  addFormats(ajv);
  return ajv.compile(JSON.parse(readFileSync(join(root, 'schema/record.schema.json'), 'utf8')));
}
