// Our NVML declarations against NVIDIA's real nvml.h (Debian's libnvidia-ml-dev, extracted by
// scripts/system-deps.sh into ~/.cache/taskmeter-deps/nvml/include).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nvidiaHeaderDir, requireSystemTool, root, run } from './helpers';

const header = join(nvidiaHeaderDir, 'nvml.h');
const check = join(root, 'test/abi/nvml_abi_check.cc');
const work = mkdtempSync(join(tmpdir(), 'taskmeter-abi-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function compile(nativeDir: string) {
  return run('g++', ['-std=c++17', '-fsyntax-only', `-I${nvidiaHeaderDir}`, `-I${nativeDir}`, check], {
    timeoutMs: 60_000,
  });
}

const noHeader = requireSystemTool('nvml-header');
describe.skipIf(noHeader)(`ABI against NVIDIA's nvml.h${noHeader ? ` (skipped: ${noHeader})` : ''}`, () => {
  it('has the header (installed by scripts/system-deps.sh)', () => {
    expect(existsSync(header), `${header} missing: run bash scripts/system-deps.sh`).toBe(true);
    expect(readFileSync(header, 'utf8')).toMatch(/NVML_API_VERSION/);
  });

  it('our declarations have NVIDIA sizes, offsets and constants (static_assert)', async () => {
    const r = await compile(join(root, 'native'));
    expect(r.code, r.stderr).toBe(0);
  });

  it('the check catches a wrong declaration (negative control)', async () => {
    const broken = join(work, 'native');
    mkdirSync(join(broken, 'nvml'), { recursive: true });
    const api = readFileSync(join(root, 'native/nvml/nvml_api.h'), 'utf8');
    const swapped = api.replace('kErrorGpuIsLost = 15', 'kErrorGpuIsLost = 16');
    expect(swapped).not.toBe(api);
    writeFileSync(join(broken, 'nvml/nvml_api.h'), swapped);
    const r = await compile(broken);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/kErrorGpuIsLost/);
  });
});
