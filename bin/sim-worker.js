// Worker-thread entry for `dkv sim --workers N`: load tsx in this thread, then the TypeScript body.
import { register } from 'tsx/esm/api';

register();
await import('../jepsen-lite/sim/seed-worker.ts');
