// node scripts/timeline-demo.mjs [out.png] — the run behind README's sample report and docs/timeline.png: a Python
// job with worker processes whose GPU (the test suite's fake NVML, driven by the job) fills up and runs busy, under
// `taskmeter --timeline`; the page is then photographed by headless Chromium (Debian's chromium). Needs python3,
// chromium and a build (npm run compile; the fake NVML is built here if missing).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFakeNvml } from '../test/fixtures/fake-nvml/build.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2] ?? join(root, 'docs/timeline.png');
const work = mkdtempSync(join(tmpdir(), 'taskmeter-demo-'));
const scenario = join(work, 'gpu.txt');
const job = join(work, 'demo.py');
writeFileSync(
  job,
  `import os, subprocess, sys, time
scenario = sys.argv[1]
def gpu(mib, util):
    me = os.getpid()
    text = ("count=1\\ndev0.name=NVIDIA H100 80GB HBM3 (fake NVML)\\ndev0.total=%d\\ndev0.used=%d\\ndev0.util=%d\\n"
            "dev0.power_mw=%d\\ndev0.procs=%d:%d\\ndev0.putil=%d:%d:%d\\n"
            % (80 << 30, (mib + 600) << 20, util, 90000 + util * 5000, me, mib << 20, me, util, util // 2))
    with open(scenario + ".tmp", "w") as f:
        f.write(text)
    os.rename(scenario + ".tmp", scenario)
gpu(0, 0)
worker = "b = bytearray(30 << 20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nimport time; time.sleep(2.2)"
workers = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(4)]
data = []
for step in range(8):
    chunk = bytearray(24 << 20)
    for i in range(0, len(chunk), 4096):
        chunk[i] = 1
    data.append(chunk)
    gpu(step * 400, 30 + step * 10)
    time.sleep(0.15)
gpu(3000, 100)
t = time.process_time()
while time.process_time() - t < 0.8:
    pass
time.sleep(0.6)
del data
gpu(0, 0)
time.sleep(0.5)
for w in workers:
    w.wait()
`,
);
writeFileSync(scenario, 'count=1\ndev0.name=NVIDIA H100 80GB HBM3 (fake NVML)\n');
const page = join(work, 'run.html');
// python3 on PATH is the interpreter itself, not a version manager's shim (which would add processes of its own)
const bin = join(work, 'bin');
mkdirSync(bin);
const python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)']).toString().trim();
symlinkSync(python, join(bin, 'python3'));
const env = {
  ...process.env,
  PATH: `${bin}${delimiter}${process.env.PATH}`,
  TASKMETER_NVML_LIBRARY: buildFakeNvml().full,
  FAKE_NVML_SCENARIO: scenario,
};
// python3 by name, the files by relative path: the report's command line and the chart's title as a user types them
const run = spawnSync(
  process.execPath,
  [join(root, 'bin/taskmeter.js'), '-t', page, '--', 'python3', 'demo.py', 'gpu.txt'],
  {
    env,
    cwd: work,
    encoding: 'utf8',
  },
);
process.stderr.write(run.stderr);
if (run.status !== 0) throw new Error(`the demo run failed: ${run.status}`);
const shot = spawnSync(
  'chromium',
  [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--hide-scrollbars',
    `--user-data-dir=${join(work, 'profile')}`,
    '--window-size=950,600',
    `--screenshot=${out}`,
    `file://${page}`,
  ],
  { encoding: 'utf8' },
);
if (shot.status !== 0) throw new Error(`chromium failed: ${shot.stderr}`);
rmSync(work, { recursive: true, force: true });
console.log(`timeline-demo: ${out}`);
