// native/max_since.h (each window's peak since it opened, for all windows at once) tested on its own: a small C++
// driver compiled with the system compiler, no addon and no threads.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from './helpers';

describe('native MaxSince', () => {
  it("answers every window's largest reading since it opened as brute force does, readings arriving out of order included; past its cap it only ever answers lower", () => {
    const dir = mkdtempSync(join(tmpdir(), 'taskmeter-maxsince-'));
    try {
      const bin = join(dir, 'max_since_test');
      execFileSync(process.env.CXX || 'c++', [
        '-std=c++17',
        '-O1',
        '-Wall',
        '-Wextra',
        '-Werror',
        '-I',
        join(root, 'native'),
        join(root, 'test/native/max_since_test.cc'),
        '-o',
        bin,
      ]);
      const out = execFileSync(bin).toString();
      expect(out).toMatch(/^ok \d+/);
      expect(Number(out.split(' ')[1])).toBeGreaterThan(100000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
