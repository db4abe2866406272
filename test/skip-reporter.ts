// Lists every skipped test at the end of a run, with its reason (the suite or test name carries it: see
// requireSystemTool in helpers.ts), so that a green run without the system packages says what it did not test.
import type { Reporter, TestModule } from 'vitest/node';

export default class SkipReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const skipped: string[] = [];
    for (const m of testModules) {
      const file = m.moduleId.split('/test/').pop();
      for (const t of m.children.allTests('skipped')) skipped.push(`  ${file}: ${t.fullName}`);
    }
    if (skipped.length > 0) console.log(`\nSkipped tests (${skipped.length}):\n${skipped.join('\n')}\n`);
  }
}
