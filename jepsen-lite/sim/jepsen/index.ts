/** `dkv jepsen sim`: the simulated cluster with the real KV state machine, clients, nemesis and checkers. */
export {
  runJepsenSim,
  replayCommand,
  jepsenClientsDefault,
  jepsenWatchersPerNodeDefault,
  jepsenWatchersPerNodeMax,
  jepsenNodeCounts,
  recoveryMs,
  setupMsMax,
  convergenceMsMax,
  type JepsenSimOptions,
  type JepsenSimResult,
  type JepsenSimStats,
  type JepsenVerdict,
} from './run.js';
export {
  Nemesis,
  faultPlanFor,
  describePlan,
  DEFAULT_FAULT_PLAN,
  DEFAULT_STORAGE_FAULTS,
  simFaultKinds,
  transferFaultKinds,
  type FaultPlan,
  type LaneParams,
  type SimFaultKind,
  type TransferCounts,
} from './faults.js';

export { clientTimeoutMs, clientLinkDelayMsMin, clientLinkDelayMsMax, clientThinkMsMax, clientBackoffMs } from './clients.js';
export { HistoryRecorder, SimCompactor, toWatchEvent, watchMoveMsMin, watchMoveMsMax } from './watchers.js';
export { jepsenSimCommand, jepsenSimHelp, describeOutcome } from './command.js';
export {
  runLeaseSim,
  leaseReplayCommand,
  leaseHistoryJson,
  holderFaultsFor,
  leaseHoldersDefault,
  leaseRecoveryMs,
  leaseTailMsMax,
  leaseClockOffsetMsMax,
  type LeaseSimOptions,
  type LeaseSimResult,
  type LeaseSimStats,
  type LeaseSimVerdict,
} from './leases.js';
export {
  checkLeases,
  leaseCommitMsMax,
  livenessSlackMs,
  type LeaderSpan,
  type LeaseCheckResult,
  type LeaseDeadline,
  type LeaseHistory,
  type LeaseTimeline,
} from './lease-check.js';
export {
  LeaseHolders,
  holderFaultKinds,
  holderKey,
  leaseTtlSecondsChoices,
  type HeldLease,
  type HolderFaultKind,
  type LeaseBehaviour,
  type LeaseRequest,
  type LeaseRequestKind,
  type LeaseRequestResult,
} from './lease-holders.js';
export { type StoreSimOptions, type StoreSimResult, type StoreSimStats, absent, runStoreSim, storeSimKeys, storeSimReplay } from './stores.js';
