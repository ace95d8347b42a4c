import { describe } from 'vitest';
import { jepsenSimSeeds } from './jsim-seeds.js';

describe('jepsen sim, watch workload', () => jepsenSimSeeds({ workload: 'watch', first: 3000, count: 60, durationMs: 1500 }));
