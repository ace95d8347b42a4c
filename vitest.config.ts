import { defineConfig } from 'vitest/config';
import { testWorkers } from './test/workers.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time even on a 2-core machine (vitest's default there is one): most
    // files spend their time waiting on the processes, sockets and disk syncs they start, so two
    // share the cores well (the suite took 944 s against 1,411 s one at a time on 2 cores).
    maxWorkers: testWorkers(),
    // Each worker's clusters pick ports from a slice of their own (test/workers.ts).
    setupFiles: ['test/setup-ports.ts'],
    // Processes the tests start (bin/dkv.js and its children) run the build, which `npm test`
    // makes first (bin/load.js falls back to the TypeScript sources when the build is stale or
    // missing, so a run of one file after an edit still tests the edit); test/package/ checks the
    // packed build.
  },
});
