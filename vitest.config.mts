import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native addons are safest in child processes (vm-based pools give errors from the addon another realm);
    // worker_threads are tested explicitly in test/core.test.ts.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    globalSetup: ['test/global-setup.ts'],
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    // The skip reporter lists skipped tests with their reason (a missing system package).
    reporters: ['default', 'json', './test/skip-reporter.ts'],
    outputFile: { json: 'test-results.json' },
  },
});
