// The ports, as far as `npm test` goes on this machine: the win32 addon cross-compiles and links (the Zig-built
// targets are test/prebuilds.test.ts), the Windows command-line quoting and stale-parent logic are unit-tested on
// the host, and the cross-build table names the files node-gyp-build looks up. Running the arm64 and win32 prebuilds (qemu-user, Wine) is `npm run test:ports`, a CI
// step of its own (.ci/run); running them on real hardware is .github/workflows/prebuild.yml.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lastJson, requireSystemTool, root, run } from './helpers';

const noMingw = requireSystemTool('mingw-w64');

// A host-compiled C++ unit test of native/ code shared with another platform (test/ports/*.cc): builds, runs,
// and expects its one "ok N" line.
async function hostUnitTest(source: string, expected: string): Promise<void> {
  const exe = join(mkdtempSync(join(tmpdir(), 'taskmeter-host-test-')), source.replace(/\.cc$/, ''));
  const c = await run(
    'g++',
    [
      '-std=c++17',
      '-Wall',
      '-Wextra',
      '-Werror',
      `-I${join(root, 'native')}`,
      '-o',
      exe,
      join(root, `test/ports/${source}`),
    ],
    { timeoutMs: 120_000 },
  );
  expect(c.code, c.stderr).toBe(0);
  const r = await run(exe, []);
  expect(r.stdout.trim()).toBe(expected);
  expect(r.code).toBe(0);
}

describe('ports', () => {
  it.skipIf(noMingw)(
    `the win32 addon compiles and links with mingw-w64, importing only Windows and node.exe${noMingw ? ` (skipped: ${noMingw})` : ''}`,
    async () => {
      const r = await run(process.execPath, [join(root, 'scripts/cross-win32.mjs')], { timeoutMs: 300_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/warning:/);
      const out = lastJson(r.stdout);
      expect(out.problems).toEqual([]); // its audit (scripts/audit-binaries.mjs)
      expect(out.exportsNapi).toBe(true);
      expect(out.imports.map((s: string) => s.toUpperCase()).sort()).toEqual([
        'KERNEL32.DLL',
        'MSVCRT.DLL',
        'NODE.EXE',
      ]);
      expect(readFileSync(out.dll).subarray(0, 2).toString()).toBe('MZ');
    },
    300_000,
  );

  it('Windows command lines are quoted by the MSVC rules (spaces, quotes, trailing backslashes, empty args)', async () => {
    await hostUnitTest('quote-test.cc', 'ok 12');
  }, 120_000);

  it('Windows trees drop a parent pid that now belongs to a younger process (pid reuse)', async () => {
    await hostUnitTest('parent-edges-test.cc', 'ok 6');
  }, 120_000);

  it('node-gyp-build, asked as each shipped platform and libc, finds the file its target writes (glibc and musl side by side)', async () => {
    const { TARGETS } = await import('../scripts/cross-targets.mjs');
    const shipped = Object.entries(TARGETS).filter(([, t]) => t.ship);
    expect(shipped.map(([n]) => n).sort()).toEqual([
      'linux-arm64',
      'linux-x64',
      'linuxmusl-arm64',
      'linuxmusl-x64',
      'win32-x64',
    ]);
    // every shipped file in one package, as npm pack lays them out
    const pkg = mkdtempSync(join(tmpdir(), 'taskmeter-ngb-'));
    for (const [, t] of shipped) {
      mkdirSync(join(pkg, 'prebuilds', t.dir), { recursive: true });
      for (const a of t.artifacts) writeFileSync(join(pkg, 'prebuilds', t.dir, a.file), '');
    }
    for (const [, t] of shipped) {
      const addon = t.artifacts.find((a) => a.kind === 'addon')!;
      // node-gyp-build reads the platform, arch and libc it matches against from these, once, when it loads
      const r = spawnSync(process.execPath, ['-p', `require('node-gyp-build').path(${JSON.stringify(pkg)})`], {
        cwd: root,
        encoding: 'utf8',
        env: {
          ...process.env,
          npm_config_platform: t.platform,
          npm_config_arch: t.arch,
          LIBC: t.libc ?? 'glibc',
          PREBUILDS_ONLY: '1',
        },
      });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(join(pkg, 'prebuilds', t.dir, addon.file));
    }
  });

  it('the prebuild matrix covers linux x64/arm64 (glibc and musl), win32 x64 and darwin arm64/x64', () => {
    const wf = readFileSync(join(root, '.github/workflows/prebuild.yml'), 'utf8');
    for (const target of [
      'linux-x64',
      'linux-arm64',
      'linuxmusl-x64',
      'linuxmusl-arm64',
      'win32-x64',
      'darwin-arm64',
      'darwin-x64',
    ]) {
      expect(wf, target).toContain(target);
    }
    expect(wf).toMatch(/npm run prebuild/);
    expect(wf).toMatch(/npm test/);
    // the real-Windows check of measureCommand and the CLI
    expect(wf).toMatch(/cmd\.exe \/c "echo hi & exit 3"/);
  });
});
