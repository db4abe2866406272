// The ports, as far as `npm test` goes on this machine: the win32 and linux-arm64 addons cross-compile and link, the
// Windows command-line quoting and stale-parent logic are unit-tested on the host, and the cross-build table names the files
// node-gyp-build looks up. Running the arm64 and win32 prebuilds (qemu-user, Wine) is `npm run test:ports`, a CI
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

  const hasArmGcc = spawnSync('sh', ['-c', 'command -v aarch64-linux-gnu-g++']).status === 0;
  // skipped only where Debian's g++-aarch64-linux-gnu is not installed (scripts/system-deps.sh installs it)
  it.skipIf(!hasArmGcc)(
    'the linux-arm64 addon cross-compiles: an aarch64 shared object needing only libc, libstdc++, libgcc, and its exec helper needing only libc',
    async () => {
      const out = mkdtempSync(join(tmpdir(), 'taskmeter-arm64-'));
      const r = await run(
        process.execPath,
        [
          '-e',
          `import(${JSON.stringify(join(root, 'scripts/cross-targets.mjs'))}).then((m) => console.log(JSON.stringify(m.buildTarget('linux-arm64', ${JSON.stringify(out)}))))`,
        ],
        { timeoutMs: 300_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/warning:/);
      const [file, helper] = lastJson(r.stdout);
      const needs = (f: string) => {
        const elf = readFileSync(f);
        expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
        expect(elf.readUInt16LE(18)).toBe(183); // e_machine: EM_AARCH64
        const needed = spawnSync('aarch64-linux-gnu-readelf', ['-d', f], { encoding: 'utf8' }).stdout;
        return [...needed.matchAll(/Shared library: \[([^\]]+)\]/g)].map((m) => m[1]).sort();
      };
      expect(needs(file)).toEqual(['libc.so.6', 'libgcc_s.so.1', 'libstdc++.so.6']);
      // the exec helper beside it, named as the addon looks for it, is a C program: libc only
      expect(helper).toMatch(/taskmeter\.glibc-exec$/);
      expect(needs(helper)).toEqual(['libc.so.6']);
    },
    300_000,
  );

  it('Windows command lines are quoted by the MSVC rules (spaces, quotes, trailing backslashes, empty args)', async () => {
    await hostUnitTest('quote-test.cc', 'ok 12');
  }, 120_000);

  it('Windows trees drop a parent pid that now belongs to a younger process (pid reuse)', async () => {
    await hostUnitTest('parent-edges-test.cc', 'ok 6');
  }, 120_000);

  it('node-gyp-build, asked as each cross platform, finds the file its cross target writes', async () => {
    const { TARGETS } = await import('../scripts/cross-targets.mjs');
    expect(Object.keys(TARGETS).sort()).toEqual(['linux-arm64', 'win32-x64']);
    const pkg = mkdtempSync(join(tmpdir(), 'taskmeter-ngb-'));
    for (const [name, t] of Object.entries(TARGETS)) {
      const addon = t.artifacts.find((a) => a.kind === 'addon')!;
      mkdirSync(join(pkg, 'prebuilds', name), { recursive: true });
      writeFileSync(join(pkg, 'prebuilds', name, addon.file), '');
      const [platform, arch] = name.split('-');
      // node-gyp-build reads the platform, arch and libc it matches against from these, once, when it loads
      const r = spawnSync(process.execPath, ['-p', `require('node-gyp-build').path(${JSON.stringify(pkg)})`], {
        cwd: root,
        encoding: 'utf8',
        env: {
          ...process.env,
          npm_config_platform: platform,
          npm_config_arch: arch,
          LIBC: 'glibc',
          PREBUILDS_ONLY: '1',
        },
      });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(join(pkg, 'prebuilds', name, addon.file));
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
