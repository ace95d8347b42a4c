/** The deterministic Raft simulator: front door. */
export { SimCluster, SimNode, SIM_DEFAULTS, payloadOf, type SimClusterOptions, type SimObserver, type SimStats, type RaftOptions, type SimCallback } from './cluster.js';
export { SimDisk, SimDiskError, NO_STORAGE_FAULTS, type SimStorage, type StorageFaults } from './disk.js';
export { RecordEngine, recordCommand, RECORD_ENGINE_ID } from './record-engine.js';
export { SimNetwork, type NetworkParams, QUIET_NETWORK, ZERO_LATENCY_NETWORK } from './network.js';
export { SafetyChecker, SafetyViolation, type ViolationKind } from './safety.js';
export {
  runScenario,
  scenarioForSeed,
  scenarioArbitrary,
  storageFaultsArbitrary,
  faultArbitrary,
  describeFault,
  recoveryTicksMax,
  recoveryBoundTicks,
  catchUpEntriesPerTick,
  DEFAULT_FLOW,
  type FlowLimits,
  type SimScenario,
  type SimResult,
  type Fault,
  type ScheduledFault,
} from './scenario.js';
