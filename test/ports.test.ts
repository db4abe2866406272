// The Windows port, compiled and linked here with Debian's mingw-w64 (installed by scripts/system-deps.sh). It
// cannot run here; the CI prebuild matrix (.github/workflows/prebuild.yml) runs it on Windows.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lastJson, requireSystemTool, root, run } from './helpers';

const noMingw = requireSystemTool('mingw-w64');
describe('ports', () => {
  it.skipIf(noMingw)(`the win32 addon compiles and links with mingw-w64, importing only Windows and node.exe${noMingw ? ` (skipped: ${noMingw})` : ''}`, async () => {
    const r = await run(process.execPath, [join(root, 'scripts/cross-win32.mjs')], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/warning:/);
    const out = lastJson(r.stdout);
    expect(out.exportsNapi).toBe(true);
    expect(out.imports.map((s: string) => s.toUpperCase()).sort()).toEqual(['KERNEL32.DLL', 'MSVCRT.DLL', 'NODE.EXE']);
    expect(readFileSync(out.dll).subarray(0, 2).toString()).toBe('MZ');
  }, 300_000);

  it('the prebuild matrix covers linux x64/arm64 (glibc and musl), win32 x64 and darwin arm64/x64', () => {
    const wf = readFileSync(join(root, '.github/workflows/prebuild.yml'), 'utf8');
    for (const target of ['linux-x64', 'linux-arm64', 'linuxmusl-x64', 'linuxmusl-arm64', 'win32-x64', 'darwin-arm64', 'darwin-x64']) {
      expect(wf, target).toContain(target);
    }
    expect(wf).toMatch(/npm run prebuild/);
    expect(wf).toMatch(/npm test/);
  });
});
