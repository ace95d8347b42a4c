import { describe } from 'vitest';
import { leaseSimSeeds } from './lease-sim-seeds.js';

// 1,040 seeds in all, split over two files so vitest runs them in parallel.
describe('jepsen sim, lease workload (seeds 520-1039)', () => leaseSimSeeds({ first: 520, count: 520, durationMs: 4000 }));
