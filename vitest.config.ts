import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Processes the tests start (bin/dkv.js and its children) run the TypeScript sources; the CLI
    // suites clear this for their short-lived commands (and the instances suite for its servers),
    // which then run the build when it is fresh (bin/load.js falls back to the sources when it is
    // stale); test/package/ checks the packed build. (Running every suite on the build starts
    // processes ~3x faster, but two CI runs with it ended real-membership.test with no leader for
    // 30 s after the run — not understood yet, see the stop note.)
    env: { DKV_FROM_SOURCE: '1' },
  },
});
