import { describe } from 'vitest';
import { leaseSimSeeds } from './lease-sim-seeds.js';

// 1,040 seeds in all, split over two files so vitest runs them in parallel.
describe('jepsen sim, lease workload (seeds 0-519)', () => leaseSimSeeds({ first: 0, count: 520, durationMs: 4000 }));
