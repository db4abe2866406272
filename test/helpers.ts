import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const root = join(__dirname, '..');
export const distEntry = join(root, 'dist/index.js');

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
  timedOut: boolean;
}

/** Runs a command with a hard timeout; never rejects. */
export function run(
  command: string,
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
): Promise<ChildResult> {
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
      resolve({ code: null, signal: null, stdout, stderr: stderr + String(err), elapsedMs: performance.now() - started, timedOut });
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

/** Runs a script from test/children/ in a fresh node process. */
export function runChild(
  script: string,
  args: string[] = [],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): Promise<ChildResult> {
  return run(process.execPath, [...(options.nodeArgs ?? []), join(root, 'test/children', script), ...args], options);
}

/** Parses the last JSON line a child printed. */
export function lastJson<T = any>(out: string): T {
  const lines = out.trim().split('\n').filter((l) => l.startsWith('{') || l.startsWith('['));
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

/** An environment for a child: no inherited GPU settings, plus the given ones. */
export function gpuEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['TASKMETER_NVML_LIBRARY', 'TASKMETER_DISABLE_GPU', 'CUDA_VISIBLE_DEVICES', 'FAKE_NVML_SCENARIO', 'FAKE_NVML_LOG', 'TASKMETER_PID_NAMESPACE']) {
    delete env[k];
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** A real JSON Schema validator (ajv, draft 2020-12) for schema/record.schema.json. */
export function recordValidator() {
  const Ajv2020 = require('ajv/dist/2020').default;
  const addFormats = require('ajv-formats').default;
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  addFormats(ajv);
  return ajv.compile(JSON.parse(require('node:fs').readFileSync(join(root, 'schema/record.schema.json'), 'utf8')));
}
