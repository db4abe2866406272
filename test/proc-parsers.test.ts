// Property tests of every /proc parser (native/proc/parse_linux.cc) over generated inputs: comm with spaces, ')'
// and newlines, Groups: lines of thousands of entries, truncated and empty reads, huge and negative numbers. The
// parsers run in a small C++ driver built here with AddressSanitizer and UBSan (each input sits in a heap block of
// exactly its length, so a read past its end aborts the driver): never a crash, and never a wrong number — either the
// exact value that was written, or an error with its reason.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from './helpers';

const SEED = Number(process.env.FC_SEED ?? 20261128);
const RUNS = 400;
const linux = process.platform === 'linux';
let dir = '';
let driver = '';

function buildDriver(): string {
  const out = join(dir, 'parse-driver');
  const src = [join(root, 'native/proc/parse_linux.cc'), join(root, 'test/native/parse-driver.cc')];
  const base = ['-std=c++17', '-O1', '-g', '-o', out, ...src];
  const sanitized = spawnSync('g++', ['-fsanitize=address,undefined', '-fno-sanitize-recover=all', ...base], {
    encoding: 'utf8',
  });
  if (sanitized.status !== 0) execFileSync('g++', base); // no sanitizer runtime: still tests every value
  return out;
}

type Kind = 's' | 'm' | 'h' | 'r' | 'p' | 'd' | 'c';
interface Out {
  e: string;
  [k: string]: unknown;
}

/** Runs many inputs through the driver at once; the driver must exit 0 (a sanitizer report exits non-zero). */
function parse(inputs: [Kind, Buffer][]): Out[] {
  const frames: Buffer[] = [];
  for (const [kind, data] of inputs) {
    const head = Buffer.alloc(5);
    head.write(kind, 0, 'latin1');
    head.writeUInt32LE(data.length, 1);
    frames.push(head, data);
  }
  const r = spawnSync(driver, [], {
    input: Buffer.concat(frames),
    maxBuffer: 1 << 28,
    env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' },
  });
  if (r.status !== 0)
    throw new Error(
      `parse driver failed (status ${r.status}, signal ${r.signal}):\n${String(r.stderr).slice(0, 4000)}`,
    );
  const lines = String(r.stdout).trim().split('\n');
  expect(lines.length).toBe(inputs.length);
  return lines.map((l) => JSON.parse(l) as Out);
}

const sample = <T>(arb: fc.Arbitrary<T>, n = RUNS, offset = 0): T[] =>
  fc.sample(arb, { numRuns: n, seed: SEED + offset });
const hex = (s: Buffer) => s.toString('hex');

const MAX_EXACT = 2 ** 53;
const u53 = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 0, max: 1000 }),
  fc.maxSafeInteger().map((v) => Math.min(Math.abs(v), MAX_EXACT)),
);
const pidArb = fc.integer({ min: 1, max: 4194304 });
// comm: up to 15 bytes of anything a process may call itself, weighted to the troublesome ones
const commArb = fc
  .array(fc.oneof(fc.constantFrom(' ', ')', '(', '\n', ') S 1 ', ')\n', '\t', 'é'), fc.string({ maxLength: 4 })), {
    maxLength: 6,
  })
  .map((parts) => {
    let b = Buffer.from(parts.join(''), 'utf8');
    if (b.length > 15) b = b.subarray(0, 15);
    return b.includes(0) ? Buffer.from(b.toString('latin1').replace(/\0/g, 'x'), 'latin1') : b;
  });

interface Stat {
  pid: number;
  comm: Buffer;
  state: string;
  ppid: number;
  flags: number;
  minflt: number;
  cminflt: number;
  majflt: number;
  cmajflt: number;
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
  threads: number;
  start: number;
  rss: number;
  others: number[];
}
const statArb: fc.Arbitrary<Stat> = fc.record({
  pid: pidArb,
  comm: commArb,
  state: fc.constantFrom('R', 'S', 'D', 'Z', 'T', 't', 'X', 'I'),
  ppid: fc.integer({ min: 0, max: 4194304 }),
  flags: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  minflt: u53,
  cminflt: u53,
  majflt: u53,
  cmajflt: u53,
  utime: u53,
  stime: u53,
  cutime: u53,
  cstime: u53,
  threads: fc.integer({ min: 1, max: 100000 }),
  start: u53,
  rss: u53,
  // the fields we skip may be negative (tty, tpgid, priority, nice) or huge
  others: fc.array(fc.oneof(fc.integer({ min: -100, max: 100 }), fc.constant(-1), u53), {
    minLength: 30,
    maxLength: 30,
  }),
});

function statLine(s: Stat, override: Record<number, string> = {}): Buffer {
  // fields 3..52 of proc(5)
  const f: string[] = [];
  const o = s.others;
  for (let field = 3; field <= 52; field++) {
    const v: Record<number, string | number> = {
      3: s.state,
      4: s.ppid,
      9: s.flags,
      10: s.minflt,
      11: s.cminflt,
      12: s.majflt,
      13: s.cmajflt,
      14: s.utime,
      15: s.stime,
      16: s.cutime,
      17: s.cstime,
      20: s.threads,
      22: s.start,
      24: s.rss,
    };
    f.push(override[field] ?? String(v[field] ?? o[field % o.length]));
  }
  return Buffer.concat([Buffer.from(`${s.pid} (`), s.comm, Buffer.from(`) ${f.join(' ')}\n`)]);
}

beforeAll(() => {
  if (!linux) return;
  dir = mkdtempSync(join(tmpdir(), 'taskmeter-parse-'));
  driver = buildDriver();
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.runIf(linux)('/proc parsers over generated inputs', () => {
  it('a stat line reads back exactly, whatever the command name holds (spaces, parentheses, newlines)', () => {
    const stats = sample(statArb);
    const outs = parse(stats.map((s) => ['s', statLine(s)]));
    stats.forEach((s, i) => {
      const o = outs[i];
      expect(o, hex(statLine(s))).toMatchObject({
        e: 'ok',
        pid: s.pid,
        state: s.state.charCodeAt(0),
        ppid: s.ppid,
        flags: s.flags,
        minflt: s.minflt,
        cminflt: s.cminflt,
        majflt: s.majflt,
        cmajflt: s.cmajflt,
        utime: s.utime,
        stime: s.stime,
        cutime: s.cutime,
        cstime: s.cstime,
        threads: s.threads,
        start: s.start,
        rss: s.rss,
      });
      expect(o.comm).toBe(hex(s.comm));
    });
  });

  it('a stat read cut short anywhere, or empty, is an error, never smaller numbers', () => {
    const cases = sample(fc.tuple(statArb, fc.double({ min: 0, max: 1, noNaN: true })), RUNS, 1);
    const inputs = cases.map(([s, at]): [Kind, Buffer] => {
      const line = statLine(s);
      return ['s', line.subarray(0, Math.floor(at * (line.length - 1)))];
    });
    const outs = parse(inputs);
    outs.forEach((o, i) => {
      expect(o.e, hex(inputs[i][1])).not.toBe('ok');
      expect(['empty', 'truncated', 'malformed']).toContain(o.e);
    });
  });

  it('a number in stat too large to be true, or negative where it cannot be, is refused (out of range / malformed)', () => {
    const fields = [4, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 22, 24];
    const bad = fc.oneof(
      fc.constantFrom(
        '9007199254740993',
        '18446744073709551615',
        '18446744073709551616',
        '99999999999999999999999999',
        '-1',
        '-0',
        '1e3',
        '0x10',
        '',
      ),
      fc.bigInt({ min: BigInt(MAX_EXACT) + 1n, max: 10n ** 30n }).map(String),
    );
    const cases = sample(fc.tuple(statArb, fc.constantFrom(...fields), bad), RUNS, 2);
    const outs = parse(cases.map(([s, field, v]) => ['s', statLine(s, { [field]: v })]));
    outs.forEach((o, i) => {
      const [, field, v] = cases[i];
      expect(o.e, `field ${field} = "${v}"`).toMatch(/out of range|malformed/);
    });
    // a pid or parent pid beyond PID_MAX_LIMIT is not a pid
    const [big] = parse([['s', statLine({ ...cases[0][0], ppid: 4194305 })]]);
    expect(big.e).toBe('out of range');
  });

  it('random bytes never crash the stat, statm, status, smaps_rollup and children parsers', () => {
    const blobs = sample(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      RUNS,
      3,
    );
    const mixed = sample(
      fc
        .array(
          fc.constantFrom(
            '1',
            '0',
            ' ',
            '\n',
            '(',
            ')',
            'VmHWM:',
            'VmRSS:',
            'Pss:',
            ' kB',
            '\t',
            '-',
            '99999999999999999999',
          ),
          { maxLength: 40 },
        )
        .map((a) => Buffer.from(a.join(''))),
      RUNS,
      4,
    );
    const inputs: [Kind, Buffer][] = [];
    for (const b of [...blobs, ...mixed])
      for (const k of ['s', 'm', 'h', 'r', 'p', 'd', 'c'] as Kind[]) inputs.push([k, b]);
    const outs = parse(inputs);
    for (const o of outs) expect(typeof o.e).toBe('string');
    // whatever parsed is a plain, exact integer
    for (const o of outs)
      for (const v of Object.values(o))
        if (typeof v === 'number') expect(Number.isSafeInteger(v) || v === MAX_EXACT).toBe(true);
  });

  it('VmRSS and VmHWM are found after a Groups: line of thousands of groups, and a cut-short status is an error', () => {
    const statusArb = fc.record({
      groups: fc.array(fc.integer({ min: 0, max: 2 ** 32 - 2 }), { maxLength: 6000 }),
      name: commArb,
      rssKb: fc.integer({ min: 0, max: 2 ** 40 }),
      hwmKb: fc.integer({ min: 0, max: 2 ** 40 }),
      cut: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
    });
    const cases = sample(statusArb, 120, 5);
    const inputs: [Kind, Buffer][] = [];
    const expected: { key: 'h' | 'r'; value: number; ok: boolean }[] = [];
    for (const c of cases) {
      const text = Buffer.concat([
        Buffer.from('Name:\t'),
        c.name.toString('latin1').includes('\n') ? Buffer.from('x') : c.name,
        Buffer.from(
          `\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\nFDSize:\t64\nGroups:\t${c.groups.join(' ')} \n`,
        ),
        Buffer.from(
          `NStgid:\t42\nVmPeak:\t  999999 kB\nVmSize:\t  123 kB\nVmHWM:\t${String(c.hwmKb).padStart(8)} kB\nVmRSS:\t${String(c.rssKb).padStart(8)} kB\nRssAnon:\t 1 kB\nThreads:\t1\n`,
        ),
      ]);
      const len = c.cut === undefined ? text.length : Math.floor(c.cut * text.length);
      const buf = text.subarray(0, len);
      for (const key of ['h', 'r'] as const) {
        const label = key === 'h' ? 'VmHWM:' : 'VmRSS:';
        const lineEnd = text.indexOf('\n', text.indexOf(label));
        inputs.push([key, buf]);
        expected.push({ key, value: (key === 'h' ? c.hwmKb : c.rssKb) * 1024, ok: len > lineEnd });
      }
    }
    const outs = parse(inputs);
    outs.forEach((o, i) => {
      const x = expected[i];
      if (x.ok) expect(o).toEqual({ e: 'ok', bytes: x.value });
      else expect(o.e).toMatch(/truncated|empty|missing/);
    });
    // a value too large for a double to hold exactly, in bytes
    const [huge] = parse([['r', Buffer.from(`VmRSS:\t${2 ** 44} kB\n`)]]);
    expect(huge.e).toBe('out of range');
    // a key that is only the prefix of another key's name is not that key
    const [prefix] = parse([['r', Buffer.from('XVmRSS:\t5 kB\nVmRSSx:\t6 kB\n')]]);
    expect(prefix.e).toMatch(/missing|malformed/);
  });

  it('a children list of thousands of pids reads back whole; a cut-short last entry is reported, never read as a smaller pid', () => {
    const cases = sample(
      fc.record({
        pids: fc.array(pidArb, { maxLength: 5000 }),
        cut: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
      }),
      120,
      6,
    );
    const inputs = cases.map((c): [Kind, Buffer] => {
      const text = Buffer.from(c.pids.map((p) => `${p} `).join(''));
      return ['c', c.cut === undefined ? text : text.subarray(0, Math.floor(c.cut * text.length))];
    });
    const outs = parse(inputs);
    outs.forEach((o, i) => {
      const text = inputs[i][1].toString();
      const complete = text
        .slice(0, text.lastIndexOf(' ') + 1)
        .split(' ')
        .filter(Boolean)
        .map(Number);
      expect(o.pids).toEqual(complete);
      expect(o.e).toBe(text.length === 0 || text.endsWith(' ') ? 'ok' : 'truncated');
    });
  });

  it('schedstat reads time on CPU and times run exactly; a cut-short, garbled or overlong one is an error', () => {
    const cases = sample(
      fc.tuple(u53, u53, u53, fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined })),
      RUNS,
      8,
    );
    const inputs = cases.map(([a, b, c, cut]): [Kind, Buffer] => {
      const text = Buffer.from(`${a} ${b} ${c}\n`);
      return ['d', cut === undefined ? text : text.subarray(0, Math.floor(cut * (text.length - 1)))];
    });
    const outs = parse(inputs);
    outs.forEach((o, i) => {
      const [a, , c, cut] = cases[i];
      if (cut === undefined) expect(o).toEqual({ e: 'ok', run: a, slices: c });
      else expect(o.e).toMatch(/truncated|empty/);
    });
    const bad = parse([
      ['d', Buffer.from('1 2 3 4\n')],
      ['d', Buffer.from('-1 2 3\n')],
      ['d', Buffer.from('99999999999999999999 2 3\n')],
    ]);
    expect(bad.map((o) => o.e)).toEqual(['malformed', 'malformed', 'out of range']);
  });

  it('smaps_rollup: Pss is found past the rollup line and never read from Pss_Anon or Pss_Dirty', () => {
    const cases = sample(
      fc.tuple(
        u53.map((v) => Math.floor(v / 1024)),
        u53.map((v) => Math.floor(v / 1024)),
      ),
      RUNS,
      10,
    );
    const outs = parse(
      cases.map(([rss, pss]): [Kind, Buffer] => [
        'p',
        Buffer.from(
          `55d0c0000000-7ffc00000000 ---p 00000000 00:00 0                          [rollup]\nRss:   ${rss} kB\n` +
            `Pss:   ${pss} kB\nPss_Dirty:   7 kB\nPss_Anon:   8 kB\nPss_File:   9 kB\n`,
        ),
      ]),
    );
    outs.forEach((o, i) => {
      expect(o).toEqual({ e: 'ok', bytes: cases[i][1] * 1024 });
    });
    const [only] = parse([['p', Buffer.from('x [rollup]\nPss_Anon:   8 kB\nPss_File:   9 kB\n')]]);
    expect(only.e).toBe('missing');
  });

  it('statm reads size and resident exactly; a cut-short or garbled statm is an error', () => {
    const cases = sample(
      fc.tuple(u53, u53, fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined })),
      RUNS,
      7,
    );
    const inputs = cases.map(([a, b, cut]): [Kind, Buffer] => {
      const text = Buffer.from(`${a} ${b} 3 4 0 5 0\n`);
      return ['m', cut === undefined ? text : text.subarray(0, Math.floor(cut * text.length))];
    });
    const outs = parse(inputs);
    outs.forEach((o, i) => {
      const [a, b] = cases[i];
      const text = inputs[i][1].toString();
      const whole = text.length > `${a} ${b}`.length;
      if (whole) expect(o).toEqual({ e: 'ok', size: a, resident: b });
      else expect(o.e).toMatch(/truncated|empty|malformed/);
    });
    const [neg] = parse([['m', Buffer.from('-5 3 0 0 0 0 0\n')]]);
    expect(neg.e).toBe('malformed');
  });
});
