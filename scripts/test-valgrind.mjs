// npm run test:valgrind — valgrind memcheck over test/children/valgrind-script.cjs (every native entry point, with
// the fake NVML loaded), on the addon built by npm install. Fails on any invalid read/write, use of uninitialised
// memory, or a definite leak whose stack passes through taskmeter's code.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { buildFakeNvml } = await import(join(root, 'test/fixtures/fake-nvml/build.mjs'));
const lib = buildFakeNvml().full;
const dir = mkdtempSync(join(tmpdir(), 'taskmeter-valgrind-'));
const scenario = join(dir, 'scenario.txt');
// dev1 in MIG mode with one slice, accounting and per-process utilization on dev0: the issue-12 paths too
writeFileSync(
  scenario,
  'count=2\ndev0.procs=4242:1048576,self:67108864\ndev0.util=30\ndev0.accounting=1\ndev0.acct=self:67108864\ndev0.putil=self:10:5\ndev0.mps=77:1000\ndev1.mig=1\nmig0.parent=1\nmig0.procs=self:1048576\n',
);
const xml = join(dir, 'memcheck.xml');
const args = [
  '--tool=memcheck',
  '--error-exitcode=99',
  '--leak-check=full',
  '--show-leak-kinds=definite',
  '--errors-for-leak-kinds=none', // leaks are judged below, by whose they are
  '--track-origins=no',
  '--child-silent-after-fork=yes',
  '--trace-children=no',
  '--xml=yes',
  `--xml-file=${xml}`,
  process.execPath,
  '--jitless', // V8's JIT writes and runs code valgrind would otherwise flag
  join(root, 'test/children/valgrind-script.cjs'),
];
const env = {
  ...process.env,
  TASKMETER_NVML_LIBRARY: lib,
  FAKE_NVML_SCENARIO: scenario,
  TASKMETER_GPU_DETECT_TIMEOUT_MS: '30000',
};
execFileSync('valgrind', ['--version'], { stdio: 'inherit' });
const t0 = Date.now();
const r = spawnSync('valgrind', args, { env, encoding: 'utf8', timeout: 15 * 60_000 });
const text = readFileSync(xml, 'utf8');
rmSync(dir, { recursive: true, force: true });
const errors = [...text.matchAll(/<error>([\s\S]*?)<\/error>/g)].map((m) => m[1]);
const kind = (e) => /<kind>(.*?)<\/kind>/.exec(e)?.[1] ?? '?';
const ours = (e) => /taskmeter\.node|fake-nvml|native\/(addon|sampler|spawn|tree|proc|nvml)/.test(e);
const leaks = errors.filter((e) => kind(e).startsWith('Leak_'));
const memory = errors.filter((e) => !kind(e).startsWith('Leak_'));
const ourLeaks = leaks.filter(ours);
console.log(
  `valgrind: ${Math.round((Date.now() - t0) / 1000)} s, script exit ${r.status}, output: ${(r.stdout || '').trim()}`,
);
console.log(
  `valgrind: ${memory.length} memory errors (${memory.filter(ours).length} in taskmeter's code), ${leaks.length} definite leaks (${ourLeaks.length} through taskmeter's code)`,
);
for (const e of [...memory, ...ourLeaks].slice(0, 5)) console.log(e.slice(0, 3000));
if (r.status !== 0 || memory.length > 0 || ourLeaks.length > 0 || !/"ok":true/.test(r.stdout || '')) {
  console.error('test:valgrind: FAILED');
  process.exit(1);
}
console.log('test:valgrind: clean');
