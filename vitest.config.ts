import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Processes the tests start (bin/dkv.js and its children) run the TypeScript sources, never a
    // stale dist/ build; test/package/ checks the build itself.
    env: { DKV_FROM_SOURCE: '1' },
  },
});
