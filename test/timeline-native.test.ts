// native/timeline.cc (the sampler's timeline building: append, merge, halving, CPU rate) tested on its own: a small
// C++ driver compiled with the system compiler against that one file, no addon and no threads.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from './helpers';

describe('native timeline building', () => {
  it('appends, merges neighbours keeping maxima and means (over the ticks that had a value), halves at 2048 points, never repeats a partial point at a second take, and computes the CPU rate', () => {
    const dir = mkdtempSync(join(tmpdir(), 'taskmeter-timeline-'));
    try {
      const bin = join(dir, 'timeline_test');
      const cxx = process.env.CXX || 'c++';
      execFileSync(cxx, [
        '-std=c++17',
        '-O1',
        '-Wall',
        '-Wextra',
        '-Werror',
        '-I',
        join(root, 'native'),
        join(root, 'native/timeline.cc'),
        join(root, 'test/native/timeline_test.cc'),
        '-o',
        bin,
      ]);
      const out = execFileSync(bin).toString();
      expect(out).toMatch(/^ok \d+/);
      expect(Number(out.split(' ')[1])).toBeGreaterThan(40);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
