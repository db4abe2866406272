// The package as users get it: one source list for both native builds, and a packed tarball (with its prebuild)
// that installs and loads from ESM and CJS on a machine with no compiler.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RECORD_SCHEMA_VERSION } from '../dist/record.js';
import { root, run } from './helpers';

describe('native sources', () => {
  it('binding.gyp and CMakeLists.txt both build from sources.json, which lists every native source', () => {
    const lists = JSON.parse(readFileSync(join(root, 'sources.json'), 'utf8'));
    const gyp = readFileSync(join(root, 'binding.gyp'), 'utf8');
    const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
    for (const group of ['common', 'linux', 'darwin', 'win32']) {
      expect(Array.isArray(lists[group]), group).toBe(true);
      expect(gyp).toContain(`require('./sources.json').${group}.join(' ')`);
    }
    expect(cmake).toMatch(/file\(READ "\$\{CMAKE_CURRENT_SOURCE_DIR\}\/sources\.json"/);
    expect(cmake).toMatch(/foreach\(group common \$\{TASKMETER_OS\}\)/);
    const onDisk: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
        const rel = `${dir}/${e.name}`;
        if (e.isDirectory()) walk(rel);
        else if (/\.cc$/.test(e.name)) onDisk.push(rel);
      }
    };
    walk('native');
    const listed = new Set<string>([...lists.common, ...lists.linux, ...lists.darwin, ...lists.win32]);
    expect([...listed].sort()).toEqual(onDisk.sort());
    // each OS gets exactly one process-metrics file
    for (const os of ['linux', 'darwin', 'win32'])
      expect(lists[os].filter((f: string) => f.startsWith('native/proc/proc_'))).toEqual([`native/proc/proc_${os}.cc`]);
  });
});

describe('npm pack + install without a compiler', () => {
  const work = mkdtempSync(join(tmpdir(), 'taskmeter-pack-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('installs from the tarball with its prebuild and loads from ESM and CJS', async () => {
    // 1. pack the project as it is (dist/ built by pretest), 2. add the prebuild in a copy, 3. pack again.
    const first = await run('npm', ['pack', '--silent', '--pack-destination', work], { timeoutMs: 60_000 });
    expect(first.code, first.stderr).toBe(0);
    const tgz1 = join(work, first.stdout.trim().split('\n').pop()!);
    const stage = join(work, 'stage');
    mkdirSync(stage);
    expect((await run('tar', ['-xzf', tgz1, '-C', stage, '--strip-components=1'])).code).toBe(0);
    // only what `npm run prebuild` makes (not whatever prebuilds/ of this checkout held when it was packed)
    rmSync(join(stage, 'prebuilds'), { recursive: true, force: true });
    symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'), 'dir');
    const pre = await run('npm', ['run', 'prebuild'], { cwd: stage, timeoutMs: 180_000 });
    expect(pre.code, pre.stdout + pre.stderr).toBe(0);
    const built = readdirSync(join(stage, 'prebuilds/linux-x64'));
    // tagged by libc, so that a musl build can sit beside it; the exec helper beside the addon that finds it
    expect(built.sort()).toEqual(['taskmeter.glibc-exec', 'taskmeter.glibc.node']);
    rmSync(join(stage, 'node_modules'));
    rmSync(join(stage, 'build'), { recursive: true, force: true });
    // --ignore-scripts: the stage is an unpacked tarball (dist/ built, no scripts/ for prepack to run).
    const second = await run('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], {
      cwd: stage,
      timeoutMs: 60_000,
    });
    expect(second.code, second.stderr).toBe(0);
    const tgz = join(work, second.stdout.trim().split('\n').pop()!);
    const listing = await run('tar', ['-tzf', tgz]);
    const files = listing.stdout.split('\n');
    expect(files).toContain('package/prebuilds/linux-x64/taskmeter.glibc.node');
    expect(files).toContain('package/prebuilds/linux-x64/taskmeter.glibc-exec');
    expect(files).toContain('package/dist/index.mjs');
    expect(files).toContain('package/dist/index.d.ts');
    expect(files).toContain('package/schema/record.schema.json');
    expect(files.some((f) => f.startsWith('package/test/'))).toBe(false);

    // A PATH with node, npm, npx and sh only: no compiler, no make, no python.
    const bin = join(work, 'bin');
    mkdirSync(bin);
    const which = async (name: string) => (await run('sh', ['-c', `command -v ${name}`])).stdout.trim();
    for (const tool of ['node', 'npm', 'npx', 'sh']) symlinkSync(await which(tool), join(bin, tool));
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
    for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const inst = await run('npm', ['install', '--no-audit', '--no-fund', tgz], { cwd: app, env, timeoutMs: 120_000 });
    expect(inst.code, inst.stdout + inst.stderr).toBe(0);
    expect(existsSync(join(app, 'node_modules/taskmeter/build'))).toBe(false); // nothing was compiled

    const cjs = await run(
      'node',
      [
        '-e',
        "const t=require('taskmeter'); const u=t.measureSync(()=>1).usage; console.log(JSON.stringify({rss:t.snapshot().rssBytes, wall:u.wallTimeMs, gpu:t.hasGpu}))",
      ],
      { cwd: app, env },
    );
    expect(cjs.code, cjs.stderr).toBe(0);
    expect(JSON.parse(cjs.stdout).rss).toBeGreaterThan(0);
    // the prebuilt exec helper is found and runs: a tiny command's exact peak, not the Node parent's
    const cmd = await run(
      'node',
      [
        '-e',
        "require('taskmeter').measureCommand('/bin/true').then((r)=>console.log(JSON.stringify({code:r.exitCode,rss:r.usage.maxRssBytes,src:r.usage.maxRssSource})))",
      ],
      { cwd: app, env },
    );
    expect(cmd.code, cmd.stderr).toBe(0);
    const c = JSON.parse(cmd.stdout);
    expect(c).toMatchObject({ code: 0, src: 'rusage' });
    expect(c.rss).toBeLessThan(8 * 1024 * 1024);
    const esm = await run(
      'node',
      [
        '--input-type=module',
        '-e',
        "import { snapshot, measure, toRecord } from 'taskmeter'; const { usage } = await measure(async () => 1); console.log(JSON.stringify({ rss: snapshot().rssBytes, rec: toRecord(usage).schema_version }))",
      ],
      { cwd: app, env },
    );
    expect(esm.code, esm.stderr).toBe(0);
    expect(JSON.parse(esm.stdout)).toMatchObject({ rec: RECORD_SCHEMA_VERSION });
    expect(JSON.parse(esm.stdout).rss).toBeGreaterThan(0);
  }, 300_000);
});
