// The real-GPU check (test/gpu/device-check.mjs) dry-run end to end on the fake NVML's H200 profile, with stand-ins
// for PyTorch, pynvml and nvidia-smi (test/gpu/standin/): it runs on a lent GPU machine once, where a typo would
// waste the run. Every section must finish without an error, within the files and time the device allows.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fakeNvml, gpuEnv, python3Path, root, run } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'taskmeter-devcheck-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the real-GPU check', () => {
  it('runs every section to its end on the fake H200 with stand-ins, writes at most 6 files and a summary', async () => {
    const base = join(work, 'base.txt');
    const scenario = join(work, 'scenario.txt');
    const registry = join(work, 'registry.json');
    const out = join(work, 'out');
    writeFileSync(base, `profile=h200\ncount=1\ndev0.used=${2 * 2 ** 30}\n`);
    writeFileSync(scenario, readFileSync(base));
    writeFileSync(registry, '{}');
    mkdirSync(out);
    const standin = join(root, 'test/gpu/standin');
    const env = gpuEnv({
      TASKMETER_NVML_LIBRARY: fakeNvml('full'),
      FAKE_NVML_SCENARIO: scenario,
      FAKE_STANDIN_BASE: base,
      FAKE_STANDIN_REGISTRY: registry,
      PYTHONPATH: standin,
      DEVICE_CHECK_PYTHON: python3Path(),
      DEVICE_CHECK_NVIDIA_SMI: join(standin, 'nvidia-smi'),
      DEVICE_CHECK_QUICK: '1',
      OUT: out,
    });
    const r = await run(process.execPath, [join(root, 'test/gpu/device-check.mjs')], { env, timeoutMs: 240_000 });
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const files = readdirSync(out);
    expect(files.length).toBeLessThanOrEqual(6);
    expect(files).toContain('device-check.json');
    const result = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8'));
    for (const [name, section] of Object.entries<any>(result.sections)) {
      expect(section.error ?? null, `${name}: ${section.error}`).toBeNull();
      expect(section.skipped ?? null, `${name}`).toBeNull();
    }
    const s = result.summary;
    expect(Object.keys(s.sections)).toEqual([
      'import',
      'host',
      'nvmlCosts',
      'gpuThread',
      'shortJobs',
      'backToBack',
      'energy',
      'smUtil',
      'crossCheck',
    ]);
    // figures the fake knows: its H200 cost table, 100 ms counter steps, 1 GiB jobs, 300 W when busy
    expect(s.costTableCpuUs.nvmlDeviceGetTotalEnergyConsumption.busyCpuUs).toBeGreaterThanOrEqual(2817);
    // The fake's counter steps every 100 ms; a change is seen at the first read after it, so each seen interval is off
    // by up to the time between reads — a few ms on a quiet machine, tens of ms on a loaded one, where each 3 ms
    // energy call (CPU burnt) waits for a core: the bound is that read spacing, not a fixed margin.
    const energy = result.sections.nvmlCosts.cadence.energyCounter;
    const readSpacingMs = 1500 / energy.reads; // DEVICE_CHECK_QUICK: 1.5 s per series
    expect(energy.changes).toBeGreaterThanOrEqual(3);
    expect(Math.abs(s.cadenceMedianMs.energyCounter - 100)).toBeLessThan(10 + 3 * readSpacingMs);
    expect(s.shortJobsCaught.map((j: any) => j.caught)).toEqual([true, true, true]);
    expect(s.backToBack).toEqual({ process: true, device: true });
    expect(s.energy[0].counter.verdict).toBe('agrees');
    expect(s.smPercent.verdict).toBe('agrees');
    expect(s.crossCheck.perPid.map((p: any) => p.pynvml.verdict)).toEqual(['agrees', 'agrees']);
    expect(s.gpuThreadCpuMsPerS.busy).toBeGreaterThan(0);
    // the printed summary is the same JSON
    expect(JSON.parse(r.stdout.slice(r.stdout.indexOf('{')))).toEqual(s);
    // under the device's limit with room to spare (run.sh stops it at 420 s; the full run takes longer than this one)
    expect(s.seconds).toBeLessThan(200);
  }, 240_000);
});
