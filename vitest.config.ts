import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Processes the tests start (bin/dkv.js and its children) run the build `npm test` makes
    // first; bin/load.js runs the sources instead when one changed after that build, so a test
    // never runs stale code (a run of one file without building pays tsx's start-up instead).
  },
});
