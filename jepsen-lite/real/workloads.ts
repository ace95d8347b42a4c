/**
 * The workloads real mode runs: the shared ones (`register`, `kv`, `watch`: ../workload's
 * generators over the etcd KV API) and two of its own — `counter` (dkv.v1.Counter, DKV only) and
 * `lock` (etcd Lock with kept-alive leases, fenced and unfenced writes of a shared resource).
 */
import type { ModelName } from '../history';
import { type WorkloadName, modelOf, workloadNames } from '../workload/index';
import type { Target } from './cluster';

export type RealWorkloadName = WorkloadName | 'counter' | 'lock';

export const realWorkloadNames: readonly RealWorkloadName[] = [...workloadNames, 'counter', 'lock'];

export function isRealWorkloadName(name: string): name is RealWorkloadName {
  return (realWorkloadNames as readonly string[]).includes(name);
}

/** The linearizability model a workload's history is checked against. */
export function realModelOf(workload: RealWorkloadName): ModelName {
  if (workload === 'counter' || workload === 'lock') return workload;
  return modelOf(workload);
}

/** Why a workload cannot run against a target (undefined: it can). */
export function unsupportedReason(workload: RealWorkloadName, target: Target): string | undefined {
  if (workload === 'counter' && target !== 'dkv') return 'the counter workload needs --target dkv: etcd has no counter service (dkv.v1.Counter is a DKV extension)';
  return undefined;
}
