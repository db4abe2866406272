// The tests load the built package (dist/ and the addon), the way users do. `npm test` builds dist/ first (pretest);
// this makes sure the addon is there too, so that a failed build shows as one clear error, and builds the fake NVML
// libraries once for every test file.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
// @ts-expect-error: plain ESM helper without types
import { buildFakeNvml } from './fixtures/fake-nvml/build.mjs';
import { INSTALL_SYSTEM_DEPS, missingSystemTools, REQUIRE_SYSTEM_DEPS } from './helpers';

export default function setup(): void {
  const root = join(__dirname, '..');
  if (!existsSync(join(root, 'dist/index.js'))) throw new Error('dist/ is missing: run `npm run build:ts`');
  const built =
    existsSync(join(root, 'build/Release/taskmeter.node')) ||
    existsSync(join(root, `prebuilds/${process.platform}-${process.arch}`));
  if (!built) throw new Error('the native addon is not built: run `npm install` (or `npm run build:native`)');
  buildFakeNvml();
  // Tests that need a system package skip without it (saying which, and how to install it); CI sets
  // TASKMETER_REQUIRE_SYSTEM_DEPS=1 so that a missing one fails the run instead.
  const missing = missingSystemTools();
  if (missing.length === 0) return;
  const list = missing.map((m) => `  - ${m.tool}: ${m.reason}`).join('\n');
  if (process.env[REQUIRE_SYSTEM_DEPS] === '1') {
    throw new Error(`${REQUIRE_SYSTEM_DEPS}=1 but system packages are missing:\n${list}`);
  }
  console.warn(
    `\ntaskmeter: ${missing.length} system package(s) missing; the tests that need them are skipped:\n${list}\n` +
      `Install them all with: ${INSTALL_SYSTEM_DEPS}\n`,
  );
}
