import { describe } from 'vitest';
import { simulateSeeds } from './sim-seeds.js';

// Split in two files so vitest runs the halves in parallel.
describe('raft simulation, first half', () => simulateSeeds({ baseSeed: 20261124, runs: 700 }));
