// The native↔JS boundary (one definition of every layout, checked at load) and the error contract: every error has a
// stable `code`, and tests match codes, not wording.
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkLayouts, expectedLayouts, native } from '../dist/binding.js';
import { nativeLoadError } from '../dist/errors.js';
import * as tm from '../dist/index.js';
import { root, run } from './helpers';

const code = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: unknown }).code;
  }
  return 'did not throw';
};

describe('one definition of every shared layout', () => {
  it('the addon exports every layout, and each name this package uses is at the same index', () => {
    for (const [list, names] of Object.entries(expectedLayouts)) {
      expect(Object.keys(names).length, list).toBeGreaterThan(0);
      for (const [name, index] of Object.entries(names)) expect(native.layouts[list]?.[name], name).toBe(index);
    }
    expect(Object.keys(native.layouts.WindowSlot)).toHaveLength(native.WINDOW_SLOTS);
    expect(Object.keys(native.layouts.SnapshotSlot)).toHaveLength(native.SNAPSHOT_SLOTS);
    expect(Object.keys(native.layouts.GpuWindowSlot)).toHaveLength(native.GPU_WINDOW_SLOTS);
    expect(Object.keys(native.layouts.GpuSnapshotSlot)).toHaveLength(native.GPU_SNAPSHOT_SLOTS);
    expect(Object.keys(native.layouts.SpawnSlot)).toHaveLength(native.SPAWN_SLOTS);
    expect(Object.keys(native.layouts.TimelineColumn)).toHaveLength(native.TIMELINE_COLUMNS);
  });

  it('names carry their unit the same way on both sides (kGsPowerWatts ↔ GS_POWER_WATTS)', () => {
    expect(native.layouts.GpuSnapshotSlot.GS_POWER_WATTS).toBeTypeOf('number');
    expect(native.layouts.GpuWindowSlot.GW_ENERGY_JOULES).toBeTypeOf('number');
    expect(native.layouts.SnapshotSlot.SNAP_PEAK_RSS_BYTES).toBeTypeOf('number');
    // Every C++ entry X(Name) in the headers appears in the export, derived 1:1.
    const headers = [
      'native/sampler.h',
      'native/gpu_sampler.h',
      'native/proc/proc.h',
      'native/spawn.h',
      'native/nvml/gpu.h',
      'native/gpu_window.h',
      'native/timeline.h',
    ];
    const exported = new Set(Object.values(native.layouts).flatMap((m) => Object.keys(m)));
    for (const h of headers) {
      for (const m of readFileSync(join(root, h), 'utf8').matchAll(/^\s*X\((\w+)\)/gm)) {
        const snake = m[1].replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
        const names = [snake, `SNAP_${snake}`, `SPAWN_${snake}`];
        expect(
          names.some((n) => exported.has(n)),
          `${h}: ${m[1]}`,
        ).toBe(true);
      }
    }
  });

  it('each constant in src/binding.ts is declared under its own name', () => {
    const src = readFileSync(join(root, 'src/binding.ts'), 'utf8');
    const decls = [...src.matchAll(/^export const (\w+) = \w+\('(\w+)'\);$/gm)];
    expect(decls.length).toBeGreaterThan(50);
    for (const [, constName, slotName] of decls) expect(slotName).toBe(constName);
  });

  it('a swapped slot in any layout fails the load-time check with ERR_TASKMETER_ABI_MISMATCH', () => {
    expect(() => checkLayouts(native.layouts)).not.toThrow();
    for (const [list, names] of Object.entries(native.layouts)) {
      const keys = Object.keys(names);
      if (keys.length < 2 || !expectedLayouts[list]) continue;
      const swapped = { ...native.layouts, [list]: { ...names, [keys[0]]: names[keys[1]], [keys[1]]: names[keys[0]] } };
      let err: (Error & { code?: string }) | undefined;
      try {
        checkLayouts(swapped);
      } catch (e) {
        err = e as Error & { code?: string };
      }
      expect(err?.code, list).toBe('ERR_TASKMETER_ABI_MISMATCH');
      expect(err?.message).toContain(keys[0]);
    }
  });

  it('a missing layout or name fails the check too', () => {
    const { WindowSlot, ...rest } = native.layouts;
    expect(code(() => checkLayouts(rest))).toBe('ERR_TASKMETER_ABI_MISMATCH');
    const { WIN_SAMPLES: _gone, ...fewer } = WindowSlot;
    expect(code(() => checkLayouts({ ...native.layouts, WindowSlot: fewer }))).toBe('ERR_TASKMETER_ABI_MISMATCH');
    expect(code(() => checkLayouts(undefined))).toBe('ERR_TASKMETER_ABI_MISMATCH');
  });
});

describe('every error carries a stable code', () => {
  it('option errors: ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE, ERR_INVALID_ARG_VALUE', () => {
    expect(code(() => tm.measureSync(() => 0, { sampleIntervalMs: '5' as any }))).toBe('ERR_INVALID_ARG_TYPE');
    expect(code(() => tm.measureSync(() => 0, { sampleIntervalMs: 0 }))).toBe('ERR_OUT_OF_RANGE');
    expect(code(() => tm.measureSync(() => 0, { sampleInterval: 5 } as any))).toBe('ERR_INVALID_ARG_VALUE');
    expect(code(() => tm.measureSync(123 as any))).toBe('ERR_INVALID_ARG_TYPE');
    expect(code(() => tm.trackProcess(0))).toBe('ERR_OUT_OF_RANGE');
    expect(code(() => tm.toRecord({} as any))).toBe('ERR_INVALID_ARG_TYPE');
    expect(code(() => tm.usageBetween(null as any, tm.snapshot()))).toBe('ERR_INVALID_ARG_TYPE');
    expect(code(() => tm.renderTimeline({ points: [] } as any, { format: 'png' as any }))).toBe(
      'ERR_INVALID_ARG_VALUE',
    );
  });

  it('the class still matches the code (TypeError / RangeError)', () => {
    expect(() => tm.measureSync(() => 0, { sampleIntervalMs: '5' as any })).toThrow(TypeError);
    expect(() => tm.measureSync(() => 0, { sampleIntervalMs: 0 })).toThrow(RangeError);
  });

  it('renderTimeline(usage) without a timeline: ERR_TASKMETER_NO_TIMELINE, saying to pass { timeline: true }', () => {
    const { usage } = tm.measureSync(() => 0);
    let err: (Error & { code?: string }) | undefined;
    try {
      tm.renderTimeline(usage);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.code).toBe('ERR_TASKMETER_NO_TIMELINE');
    expect(err?.message).toContain('{ timeline: true }');
    const withTimeline = tm.measureSync(() => 0, { timeline: true }).usage;
    expect(tm.renderTimeline(withTimeline, { format: 'csv' })).toContain('t_seconds');
  });

  it('tracker misuse: ERR_TRACKER_NOT_STARTED, ERR_TRACKER_RUNNING', () => {
    const t = new tm.ResourceTracker();
    expect(code(() => t.stop())).toBe('ERR_TRACKER_NOT_STARTED');
    t.start();
    expect(code(() => t.start())).toBe('ERR_TRACKER_RUNNING');
    t.stop();
  });

  it('native argument errors carry codes too (one C++ helper)', () => {
    expect(code(() => native.snapshot('x' as any))).toBe('ERR_INVALID_ARG_TYPE');
    expect(code(() => native.snapshot(new Float64Array(1)))).toBe('ERR_OUT_OF_RANGE');
    expect(code(() => native.windowOpen('x' as any))).toBe('ERR_INVALID_ARG_TYPE');
  });

  it('a command that cannot run: the errno name, number and step from the system (ENOENT, EACCES, ESRCH), never an invented code', async () => {
    await expect(tm.measureCommand('no-such-command-xyz')).rejects.toMatchObject({
      code: 'ENOENT',
      errno: osConstants.errno.ENOENT,
      syscall: 'spawn no-such-command-xyz',
      path: 'no-such-command-xyz',
    });
    let gone = 4_194_000;
    while (existsSync(`/proc/${gone}`)) gone--;
    expect(() => tm.trackProcess(gone)).toThrow(
      expect.objectContaining({ code: 'ESRCH', errno: osConstants.errno.ESRCH, syscall: 'kill' }),
    );
    await expect(tm.measureCommand('true', [], { cwd: '/no/such/dir' })).rejects.toMatchObject({
      code: 'ENOENT',
      errno: osConstants.errno.ENOENT,
      syscall: 'chdir',
    });
    const dir = mkdtempSync(join(tmpdir(), 'taskmeter-eacces-'));
    const file = join(dir, 'not-executable.sh');
    writeFileSync(file, '#!/bin/sh\nexit 0\n');
    chmodSync(file, 0o644);
    if (process.getuid?.() !== 0) {
      await expect(tm.measureCommand(file)).rejects.toMatchObject({ code: 'EACCES' });
    }
    // A directory is never executable, root or not: exec fails with EACCES.
    await expect(tm.measureCommand(dir)).rejects.toMatchObject({ code: 'EACCES' });
  });

  it('gpuInfo().reasonCode sits beside the sentence', async () => {
    const info = tm.gpuInfo();
    if (info.available) expect(info.reasonCode).toBeNull();
    else expect(info.reasonCode).toMatch(/^[A-Z][A-Z0-9_]+$/);
    const r = await run(process.execPath, ['-e', "console.log(require('./dist/index.js').gpuInfo().reasonCode)"], {
      env: { ...process.env, TASKMETER_DISABLE_GPU: '1' },
    });
    expect(r.stdout.trim()).toBe('GPU_DISABLED');
    const r2 = await run(process.execPath, ['-e', "console.log(require('./dist/index.js').gpuInfo().reasonCode)"], {
      env: { ...process.env, TASKMETER_DISABLE_GPU: '', TASKMETER_NVML_LIBRARY: '/nonexistent/libnvidia-ml.so.1' },
    });
    expect(r2.stdout.trim()).toBe('NVML_LIBRARY_LOAD_FAILED');
  });
});

describe('loader hints specific to the cause', () => {
  it('--no-addons, a missing prebuild, an ABI mismatch and a foreign binary each get their own hint', () => {
    const noAddons = nativeLoadError(
      Object.assign(new Error('Cannot load native addon'), { code: 'ERR_DLOPEN_DISABLED' }),
    );
    expect(noAddons.code).toBe('ERR_TASKMETER_NATIVE_LOAD');
    expect(noAddons.message).toContain('--no-addons');
    const missing = nativeLoadError(new Error('No native build was found for platform=linux arch=x64 runtime=node'));
    expect(missing.message).toContain('npm rebuild taskmeter');
    expect(missing.message).toContain('no prebuilt binary');
    const abi = nativeLoadError(
      new Error('The module was compiled against a different Node.js version using NODE_MODULE_VERSION 115.'),
    );
    expect(abi.message).toContain('another Node ABI or N-API version');
    const arch = nativeLoadError(new Error('/x/taskmeter.node: invalid ELF header'));
    expect(arch.message).toContain('another architecture');
    const libc = nativeLoadError(new Error("/lib/libc.so.6: version `GLIBC_2.38' not found"));
    expect(libc.message).toContain('another C library');
  });

  it('node --no-addons: importing taskmeter fails with ERR_TASKMETER_NATIVE_LOAD naming the flag', async () => {
    const r = await run(process.execPath, [
      '--no-addons',
      '-e',
      "try { require('./dist/index.js') } catch (e) { console.log(JSON.stringify({ code: e.code, m: e.message })) }",
    ]);
    const out = JSON.parse(r.stdout.trim());
    expect(out.code).toBe('ERR_TASKMETER_NATIVE_LOAD');
    expect(out.m).toContain('--no-addons');
  });
});
