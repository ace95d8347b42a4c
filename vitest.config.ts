import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Processes the tests start (bin/dkv.js and its children) run the build, which `npm test`
    // makes first (bin/load.js falls back to the TypeScript sources when the build is stale or
    // missing, so a run of one file after an edit still tests the edit); test/package/ checks the
    // packed build.
  },
});
