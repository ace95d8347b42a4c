import { describe } from 'vitest';
import { jepsenSimSeeds } from './jsim-seeds.js';

// Seed suites are split over files so vitest runs them in parallel.
describe('jepsen sim, register workload', () => jepsenSimSeeds({ workload: 'register', first: 1000, count: 80, durationMs: 2500 }));
