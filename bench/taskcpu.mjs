// The candidates for measure(fn, { taskCpu: true }), side by side (issue 19): what each costs per await in the
// worst case (tasks that do nothing but await), what each sees, and how close a sampler would come.
//   node bench/taskcpu.mjs            all cases (each in a fresh process), markdown tables
//   node bench/taskcpu.mjs <case>     one case, prints JSON
import { execFileSync } from 'node:child_process';
import { AsyncLocalStorage, createHook, executionAsyncResource } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

const require = createRequire(import.meta.url);
const self = fileURLToPath(import.meta.url);
const TASKS = 10;
const AWAITS = Number(process.env.BENCH_TASKCPU_AWAITS || 50000);

// A bench-only model of the two hook designs (the shipped one is src/taskcpu.ts, measured through measure() below):
// the running task is propagated to what it creates, and `clock` is read at each switch between tasks.
function model(kind, clock) {
  const k = Symbol('task');
  const stack = [];
  const st = { current: null, last: 0, switches: 0 };
  const switchTo = (t) => {
    if (t === st.current) return;
    const now = clock();
    if (st.current) st.current.ms += now - st.last;
    st.last = now;
    st.current = t;
    st.switches++;
  };
  const hook =
    kind === 'async_hooks'
      ? createHook({
          init(_id, _type, _trigger, r) {
            if (st.current) r[k] = st.current;
          },
          before() {
            stack.push(st.current);
            switchTo(executionAsyncResource()?.[k] ?? null);
          },
          after() {
            switchTo(stack.length ? stack.pop() : null);
          },
        }).enable()
      : v8.promiseHooks.createHook({
          init(p) {
            if (st.current) p[k] = st.current;
          },
          before(p) {
            stack.push(st.current);
            switchTo(p[k] ?? null);
          },
          after() {
            switchTo(stack.length ? stack.pop() : null);
          },
        });
  const run = (t, fn) => {
    const prev = st.current;
    switchTo(t);
    try {
      return fn();
    } finally {
      switchTo(prev);
    }
  };
  return { run, st, stop: typeof hook === 'function' ? hook : () => hook.disable() };
}

async function awaits() {
  let s = 0;
  for (let i = 0; i < AWAITS; i++) {
    await null;
    s += i;
  }
  return s;
}

/** CPU (ms) of TASKS tasks that each await AWAITS times, under one candidate. */
async function costCase(name) {
  const tm = require('../dist/index.js');
  const { native } = require('../dist/binding.js');
  const clock = () => native.threadCpuMs();
  const noClock = () => 0;
  const t0 = clock();
  const tasks = Array.from({ length: TASKS }, () => ({ ms: 0 }));
  if (name === 'none') {
    await Promise.all(tasks.map(() => awaits()));
  } else if (name === 'AsyncLocalStorage.run (reference)') {
    const als = new AsyncLocalStorage();
    await Promise.all(tasks.map((t) => als.run(t, awaits)));
  } else if (name === 'measure() without taskCpu') {
    await Promise.all(tasks.map(() => tm.measure(awaits)));
  } else if (name === 'measure(fn, { taskCpu: true }) (shipped: async_hooks + thread clock)') {
    await Promise.all(tasks.map(() => tm.measure(awaits, { taskCpu: true })));
  } else {
    const [kind, withClock] = name.split(' + ');
    const m = model(kind, withClock === 'thread clock' ? clock : noClock);
    await Promise.all(tasks.map((t) => m.run(t, awaits)));
    m.stop();
  }
  return { name, ms: clock() - t0 };
}

/** What a candidate sees of a task whose CPU runs in a timer callback rather than in a promise continuation. */
async function coverageCase(kind) {
  const { native } = require('../dist/binding.js');
  const clock = () => native.threadCpuMs();
  const spin = (ms) => {
    const end = clock() + ms;
    while (clock() < end);
  };
  const m = model(kind, clock);
  const t = { ms: 0 };
  await m.run(
    t,
    () =>
      new Promise((resolve) =>
        setTimeout(() => {
          spin(50);
          resolve();
        }, 1),
      ),
  );
  m.stop();
  return { kind, seenMs: t.ms };
}

/**
 * A sampler (a native thread reading the JS thread's CPU clock every tick and charging the step to the task the JS
 * thread runs at that moment, which the hooks would publish): simulated from an exact log of who ran when — ten tasks
 * of `chunks` chunks of `minMs`…`minMs + 6 × stepMs` each — and compared with the exact figures.
 */
async function samplerCase(chunks, minMs, stepMs) {
  const { native } = require('../dist/binding.js');
  const clock = () => native.threadCpuMs();
  const spin = (ms) => {
    const end = clock() + ms;
    while (clock() < end);
  };
  const intervals = []; // [cpu start, cpu end, task]
  const k = Symbol('t');
  const stack = [];
  let current = null;
  let last = 0;
  const sw = (t) => {
    if (t === current) return;
    const now = clock();
    if (current !== null) intervals.push([last, now, current]);
    last = now;
    current = t;
  };
  const h = createHook({
    init(_a, _b, _c, r) {
      if (current !== null) r[k] = current;
    },
    before() {
      stack.push(current);
      sw(executionAsyncResource()?.[k] ?? null);
    },
    after() {
      sw(stack.length ? stack.pop() : null);
    },
  }).enable();
  const body = async (i) => {
    for (let c = 0; c < chunks; c++) {
      spin(minMs + stepMs * ((i * 7 + c * 3) % 7));
      await new Promise((r) => setImmediate(r));
    }
  };
  await Promise.all(
    Array.from({ length: TASKS }, (_, i) => {
      const prev = current;
      sw(i);
      try {
        return body(i);
      } finally {
        sw(prev);
      }
    }),
  );
  h.disable();
  const truth = new Array(TASKS).fill(0);
  for (const [a, b, i] of intervals) truth[i] += b - a;
  const result = {};
  for (const tick of [1, 0.1]) {
    const got = new Array(TASKS).fill(0);
    let j = 0;
    for (let t = intervals[0][0] + tick; t <= intervals[intervals.length - 1][1]; t += tick) {
      while (j < intervals.length && intervals[j][1] < t) j++;
      // the step (t - tick, t] goes to the task running at t (to none if the thread was between tasks)
      if (j < intervals.length && intervals[j][0] <= t) got[intervals[j][2]] += tick;
    }
    const errs = truth.map((v, i) => Math.abs(got[i] - v) / v);
    result[tick] = { maxErr: Math.max(...errs), meanErr: errs.reduce((a, b) => a + b, 0) / errs.length };
  }
  return { sampler: result };
}

const CASES = [
  'none',
  'AsyncLocalStorage.run (reference)',
  'v8.promiseHooks + no clock',
  'async_hooks + no clock',
  'v8.promiseHooks + thread clock',
  'async_hooks + thread clock',
  'measure() without taskCpu',
  'measure(fn, { taskCpu: true }) (shipped: async_hooks + thread clock)',
];

function child(args) {
  const out = execFileSync(process.execPath, [self, ...args], { env: { ...process.env, TASKMETER_DISABLE_GPU: '1' } });
  return JSON.parse(out.toString().trim().split('\n').pop());
}

export function taskCpuBench() {
  const rounds = Number(process.env.BENCH_ROUNDS || 5);
  const { native } = require('../dist/binding.js');
  const clockNs = (() => {
    for (let i = 0; i < 1000; i++) native.threadCpuMs();
    const t = process.hrtime.bigint();
    for (let i = 0; i < 200000; i++) native.threadCpuMs();
    return Number(process.hrtime.bigint() - t) / 200000;
  })();
  const ms = Object.fromEntries(CASES.map((c) => [c, []]));
  for (let r = 0; r < rounds; r++) for (const c of CASES) ms[c].push(child(['cost', c]).ms);
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const n = TASKS * AWAITS;
  const base = med(ms.none);
  console.log(
    `\nPer-task CPU candidates: ${TASKS} concurrent tasks that only await (${AWAITS} awaits each; the worst case: ` +
      `a switch per await), CPU of the thread, median of ${rounds} rounds, fresh process each. ` +
      `native.threadCpuMs() (N-API + clock_gettime(CLOCK_THREAD_CPUTIME_ID)): ${clockNs.toFixed(0)} ns.\n`,
  );
  console.log('| candidate | CPU | per await | added per await |\n|---|---:|---:|---:|');
  for (const c of CASES) {
    const v = med(ms[c]);
    console.log(
      `| ${c} | ${v.toFixed(0)} ms | ${((v / n) * 1e6).toFixed(0)} ns | ${c === 'none' ? '—' : `${(((v - base) / n) * 1e6).toFixed(0)} ns`} |`,
    );
  }
  const cov = ['async_hooks', 'v8.promiseHooks'].map((k) => child(['coverage', k]));
  console.log(
    '\n| a task whose 50 ms of CPU run in a setTimeout callback | task CPU seen |\n|---|---:|\n' +
      cov.map((c) => `| ${c.kind} | ${c.seenMs.toFixed(1)} ms |`).join('\n'),
  );
  console.log(
    '\n| a sampler charging each tick to the task running then (simulated from an exact switch log of 10 tasks) | ' +
      'tick | mean error per task | max error |\n|---|---:|---:|---:|',
  );
  for (const [what, args] of [
    ['10 chunks of 2–8 ms each', ['10', '2', '1']],
    ['300 chunks of 0.05–0.35 ms each', ['300', '0.05', '0.05']],
  ]) {
    for (const [tick, e] of Object.entries(child(['sampler', ...args]).sampler)) {
      console.log(`| ${what} | ${tick} ms | ${(e.meanErr * 100).toFixed(1)} % | ${(e.maxErr * 100).toFixed(1)} % |`);
    }
  }
}

const [cmd, arg] = process.argv.slice(2);
if (cmd === 'cost') console.log(JSON.stringify(await costCase(arg)));
else if (cmd === 'coverage') console.log(JSON.stringify(await coverageCase(arg)));
else if (cmd === 'sampler') {
  const [chunks, minMs, stepMs] = process.argv.slice(3).map(Number);
  console.log(JSON.stringify(await samplerCase(chunks, minMs, stepMs)));
} else if (process.argv[1] === self) taskCpuBench();
