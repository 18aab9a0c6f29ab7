// Only this repository needs it: an installed txoutbox resolves 'txoutbox' and 'txoutbox/testing'
// through its package exports; here they point at the sources, as tsconfig.json's paths do.
import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vitest/config';

const source = (path: string) => fileURLToPath(new URL(`../../src/${path}`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^txoutbox\/testing$/, replacement: source('testing/index.ts') },
      { find: /^txoutbox$/, replacement: source('index.ts') },
    ],
  },
  test: { include: ['examples/testing/vitest.test.ts'], root: fileURLToPath(new URL('../..', import.meta.url)) },
});
