// The tests load the built package (dist/ and the addon), the way users do. `npm test` builds dist/ first (pretest);
// this makes sure the addon is there too, so that a failed build shows as one clear error, and builds the fake NVML
// libraries once for every test file.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
// @ts-expect-error: plain ESM helper without types
import { buildFakeNvml } from './fixtures/fake-nvml/build.mjs';

export default function setup(): void {
  const root = join(__dirname, '..');
  if (!existsSync(join(root, 'dist/index.js'))) throw new Error('dist/ is missing: run `npm run build:ts`');
  const built =
    existsSync(join(root, 'build/Release/taskmeter.node')) ||
    existsSync(join(root, `prebuilds/${process.platform}-${process.arch}`));
  if (!built) throw new Error('the native addon is not built: run `npm install` (or `npm run build:native`)');
  buildFakeNvml();
}
