// The README's usage example must run as written.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, run } from './helpers';

function blocks(lang: string): string[] {
  const md = readFileSync(join(root, 'README.md'), 'utf8');
  return [...md.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
}

describe('README', () => {
  it('gives the two set-up commands', () => {
    const sh = blocks('sh').join('\n');
    expect(sh).toMatch(/^npm install\b/m);
    expect(sh).toMatch(/^npm test\b/m);
    expect(readFileSync(join(root, '.ci/run'), 'utf8')).toMatch(/^npm test$/m);
  });

  it('every js example that imports taskmeter runs as written', async () => {
    const examples = blocks('js').filter((b) => b.includes("from 'taskmeter'"));
    expect(examples.length).toBeGreaterThan(0);
    // Written inside the package root, where `import 'taskmeter'` resolves to the package itself (self-reference).
    const dir = mkdtempSync(join(root, 'test/.readme-'));
    try {
      // the exporter examples are among them
      expect(examples.some((e) => e.includes("from 'taskmeter/otel'"))).toBe(true);
      expect(examples.some((e) => e.includes("from 'taskmeter/prometheus'"))).toBe(true);
      for (const [i, code] of examples.entries()) {
        const file = join(dir, `example-${i}.mjs`);
        writeFileSync(file, code);
        const r = await run(process.execPath, [file], { timeoutMs: 30_000 });
        expect(r.code, `example ${i}:\n${code}\n${r.stderr}`).toBe(0);
        expect(r.stderr).toBe('');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
