#!/usr/bin/env node
// A lock client process of `dkv jepsen run --workload lock` (see lock-worker.ts). The sources are
// TypeScript, loaded through tsx as bin/dkv.js loads them, so there is no build step.
import { register } from 'tsx/esm/api';

register();
const { runLockWorker } = await import('./lock-worker.ts');
runLockWorker();
