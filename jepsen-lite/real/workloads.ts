/**
 * The workloads real mode runs: the shared ones (`register`, `kv`, `watch`: ../workload's
 * generators over the etcd KV API) and three of its own — `counter` (dkv.v1.Counter, DKV only),
 * `lock` (etcd Lock with kept-alive leases, fenced and unfenced writes of a shared resource) and
 * `election` (etcd Election: candidates campaign, proclaim and resign; observers hold Observe).
 */
import type { ModelName } from '../history.js';
import { type WorkloadName, modelOf, workloadNames } from '../workload/index.js';
import type { Target } from './cluster.js';

export type RealWorkloadName = WorkloadName | 'counter' | 'lock' | 'election';

export const realWorkloadNames: readonly RealWorkloadName[] = [...workloadNames, 'counter', 'lock', 'election'];

export function isRealWorkloadName(name: string): name is RealWorkloadName {
  return (realWorkloadNames as readonly string[]).includes(name);
}

/**
 * The linearizability model a workload's history is checked against. The election's operations
 * are checked as a fenced lock (campaign = acquire with the leader key's create revision as token,
 * proclaim = fenced write, resign = release), besides its own check (`check/election.ts`).
 */
export function realModelOf(workload: RealWorkloadName): ModelName {
  if (workload === 'counter' || workload === 'lock') return workload;
  if (workload === 'election') return 'lock';
  return modelOf(workload);
}

/** Why a workload cannot run against a target (undefined: it can). */
export function unsupportedReason(workload: RealWorkloadName, target: Target): string | undefined {
  if (workload === 'counter' && target !== 'dkv') return 'the counter workload needs --target dkv: etcd has no counter service (dkv.v1.Counter is a DKV extension)';
  return undefined;
}
