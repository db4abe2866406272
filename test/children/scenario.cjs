// Runs one test scenario in a fresh process. argv[2] is the source of a function `(ctx) => result` (or a promise of
// one), written in a test file beside the assertions that check it and passed here by runScenario (test/helpers.ts,
// which types ctx as ScenarioContext). Prints `{"pid": …, ...result}` as one JSON line; EXIT_NOW=1 exits right after.
// FAKE_NVML_SCENARIO names the fake NVML's scenario file: ctx.base is its text at start, ctx.write replaces it
// mid-run to inject faults.
const fs = require('node:fs');
const vm = require('node:vm');

// Vitest compiles test files with esbuild's keepNames, which may wrap a function inside the scenario in __name(…).
globalThis.__name ??= (fn) => fn;

const scenarioFile = process.env.FAKE_NVML_SCENARIO;
const ctx = {
  tm: require('../../dist/index.js'),
  require,
  MiB: 1024 * 1024,
  base: scenarioFile && fs.existsSync(scenarioFile) ? fs.readFileSync(scenarioFile, 'utf8') : '',
  write(text) {
    // the fake re-reads the file when its mtime or size changes; rename makes the change atomic
    const tmp = `${scenarioFile}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, scenarioFile);
  },
  sleep(ms) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  },
  // Blocks until pred() holds (checked every 10 ms), at most maxMs; returns whether it held. For what a background
  // thread does "soon" (a GPU reading inside a window): a loaded machine may take longer than a fixed sleep allows.
  waitFor(pred, maxMs = 10_000) {
    const t0 = Date.now();
    while (!pred()) {
      if (Date.now() - t0 > maxMs) return false;
      ctx.sleep(10);
    }
    return true;
  },
};

function print(result) {
  console.log(JSON.stringify({ pid: process.pid, ...result }));
  if (process.env.EXIT_NOW) process.exit(0);
}
const scenario = vm.runInThisContext(`(${process.argv[2]})`, { filename: 'scenario' });
const result = scenario(ctx); // a synchronous scenario runs and prints in this same turn, as it was written
if (result && typeof result.then === 'function') {
  result.then(print, (e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  print(result);
}
