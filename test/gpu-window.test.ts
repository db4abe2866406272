// The GPU window arithmetic (native/gpu_window.cc) as plain functions: energy integration and its baseline, the
// window's share of an interval, process-memory attribution, per-process utilization, the accounting peak rule and
// the PID-namespace rule by driver version. The C++ test program is compiled and run here.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fakeNvml, root, run } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'taskmeter-gpuwin-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('GPU window arithmetic (native unit tests)', () => {
  it('energy, attribution, utilization, accounting, PID and loader rules hold', async () => {
    const exe = join(work, 'gpu_window_test');
    const sources = [
      'test/native/gpu_window_test.cc',
      'native/gpu_window.cc',
      'native/nvml/gpu.cc',
      'native/nvml/loader.cc',
      'native/nvml/cuda_order.cc',
    ];
    const c = await run(
      'g++',
      ['-std=c++17', '-Wall', '-Wextra', '-Inative', '-o', exe, ...sources.map((s) => join(root, s)), '-ldl'],
      { timeoutMs: 120_000 },
    );
    expect(c.code, c.stderr).toBe(0);
    const r = await run(exe, [fakeNvml('full')]); // the loader's checks load the fake NVML
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok \d+ checks/m);
    expect(Number(/ok (\d+) checks/.exec(r.stdout)![1])).toBeGreaterThanOrEqual(30);
  });
});
