#!/usr/bin/env node
// A lock client process of `dkv jepsen run --workload lock` (jepsen-lite/real/lock-worker.ts),
// compiled or from the sources (load.js).
import { load } from './load.js';

const { runLockWorker } = await load('jepsen-lite/real/lock-worker');
runLockWorker();
