import { describe } from 'vitest';
import { jepsenSimSeeds } from './jsim-seeds.js';

describe('jepsen sim, kv workload', () => jepsenSimSeeds({ workload: 'kv', first: 2000, count: 60, durationMs: 1500 }));
