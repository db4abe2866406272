// A package packed from a fresh clone (committed files only, nothing built) is complete: `prepare` builds dist/, and
// the tarball installs and imports from ESM and CJS with no extra step.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RECORD_SCHEMA_VERSION } from '../dist/record.js';
import { onPath, root, run } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'taskmeter-clone-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The parent npm's settings (npm test sets npm_* variables) must not leak into the clone's npm runs.
const env: NodeJS.ProcessEnv = { ...process.env };
for (const k of Object.keys(env)) if (k.startsWith('npm_') && k !== 'npm_config_nodedir') delete env[k];

describe('a fresh clone', () => {
  it.skipIf(onPath('git') === null)(
    'packs a complete tarball (prepare builds dist/), which installs and imports from ESM and CJS',
    async () => {
      const clone = join(work, 'clone');
      const c = await run('git', ['clone', '--quiet', '--no-hardlinks', root, clone], { timeoutMs: 120_000 });
      expect(c.code, c.stderr).toBe(0);
      const ci = await run('npm', ['ci', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], {
        cwd: clone,
        env,
        timeoutMs: 240_000,
      });
      expect(ci.code, ci.stdout + ci.stderr).toBe(0);
      const pack = await run('npm', ['pack', '--silent', '--pack-destination', work], {
        cwd: clone,
        env,
        timeoutMs: 180_000,
      });
      expect(pack.code, pack.stderr).toBe(0);
      const tgz = join(work, pack.stdout.trim().split('\n').pop()!);
      const files = (await run('tar', ['-tzf', tgz])).stdout.split('\n');
      for (const f of [
        'dist/index.js',
        'dist/index.mjs',
        'dist/index.d.ts',
        'dist/index.d.mts',
        'dist/exporters/otel.mjs',
        'dist/exporters/prometheus.d.mts',
        'schema/record.schema.json',
        'native/addon.cc',
        'native/layout.h',
        'native/errors.h',
        'native/proc/proc_linux.cc',
        'native/nvml/loader.cc',
        'binding.gyp',
        'sources.json',
        'LICENSE',
        'README.md',
        'bin/taskmeter.js',
      ]) {
        expect(files, f).toContain(`package/${f}`);
      }
      expect(files.some((f) => f.startsWith('package/test/'))).toBe(false);

      // No prebuild in this tarball: npm install compiles the addon (a C++ toolchain is a stated requirement).
      const app = join(work, 'app');
      mkdirSync(app);
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
      const inst = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tgz], {
        cwd: app,
        env,
        timeoutMs: 300_000,
      });
      expect(inst.code, inst.stdout + inst.stderr).toBe(0);
      const cjs = await run(
        process.execPath,
        ['-e', "const t = require('taskmeter'); console.log(JSON.stringify({ rss: t.snapshot().rssBytes }))"],
        { cwd: app, env },
      );
      expect(cjs.code, cjs.stderr).toBe(0);
      expect(JSON.parse(cjs.stdout).rss).toBeGreaterThan(0);
      const esm = await run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          "import { measure, toRecord } from 'taskmeter'; import { registerTaskmeterMetrics } from 'taskmeter/otel';" +
            ' const { usage } = await measure(async () => 1);' +
            ' console.log(JSON.stringify({ v: toRecord(usage).schema_version, otel: typeof registerTaskmeterMetrics }))',
        ],
        { cwd: app, env },
      );
      expect(esm.code, esm.stderr).toBe(0);
      expect(JSON.parse(esm.stdout)).toEqual({ v: RECORD_SCHEMA_VERSION, otel: 'function' });
    },
    600_000,
  );
});
