import { describe } from 'vitest';
import { simulateSeeds } from './sim-seeds.js';

// Split in two files so vitest runs the halves in parallel.
describe('raft simulation, second half', () => simulateSeeds({ baseSeed: 77001234, runs: 700 }));
