// This process's own copy between fork and exec, held there (testHook 'holdNextFork') while a worker thread follows
// this process's tree with trackProcess(process.pid): node held-fork.cjs MIB
//   phase 1: the copy is not registered yet (only the fork in progress marks it ours), and is older than any age
//            after which a process forked without exec counts as a worker;
//   phase 2: the copy is registered by its pid.
// Prints {selfRss, copyRss, phase1, phase2} (each phase: a fresh tracker's usage), then exits.
const { Worker, isMainThread, parentPort } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const tm = require('../../dist/index.js');
const { native } = require('../../dist/binding.js');

const statmRss = (pid) => Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096;

if (!isMainThread) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const copyOfUs = () => {
    const kids = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/);
    for (const k of kids.filter(Boolean)) {
      try {
        const s = readFileSync(`/proc/${k}/stat`, 'utf8');
        const flags = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[6]);
        if (flags & 0x40) return Number(k); // PF_FORKNOEXEC
      } catch {}
    }
    return 0;
  };
  const pick = (u) => ({
    samples: u.samples,
    treePeakRssBytes: u.treePeakRssBytes,
    treePeakPssBytes: u.treePeakPssBytes,
    treePssSamples: u.treePssSamples,
    processes: u.processes,
  });
  const follow = async (cond) => {
    const t = tm.trackProcess(process.pid, { sampleIntervalMs: 10 });
    while (!cond(t.usage)) await sleep(10);
    return pick(t.stop());
  };
  parentPort.once('message', async () => {
    let copy = copyOfUs();
    while (copy === 0) {
      await sleep(1);
      copy = copyOfUs();
    }
    const seen = Date.now();
    const copyRss = statmRss(copy);
    // older than the age after which a process forked without exec is taken for a worker (tree.h), and sampled then
    const phase1 = await follow((u) => Date.now() - seen > 2500 && u.samples >= 20);
    native.testHook('releaseFork', 1); // the spawner registers the copy
    const phase2 = await follow((u) => u.treePssSamples >= 1 && u.samples >= 20);
    native.testHook('releaseFork', 1); // the copy execs
    parentPort.postMessage({ copyRss, phase1, phase2 });
  });
  parentPort.postMessage('ready');
} else {
  const mib = Number(process.argv[2]);
  const keep = Buffer.alloc(mib << 20, 1); // resident, and shared with the copy once it is forked
  const worker = new Worker(__filename);
  const selfRss = statmRss(process.pid);
  worker.once('message', () => {
    worker.once('message', (r) => {
      console.log(JSON.stringify({ selfRss, bufferBytes: keep.length, ...r }));
      worker.terminate();
    });
    native.testHook('holdNextFork', 1);
    worker.postMessage('go');
    // blocks in the fork until the worker has released it twice
    tm.measureCommand('/bin/true').then((c) => {
      if (c.exitCode !== 0) throw new Error(`exit ${c.exitCode}`);
    });
  });
}
