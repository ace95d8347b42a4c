// Worker-thread entry for `dkv sim --workers N`: the seed worker, compiled or from the sources (load.js).
import { load } from './load.js';

await load('jepsen-lite/sim/seed-worker');
