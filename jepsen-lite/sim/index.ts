/** The deterministic Raft simulator: front door. */
export { SimCluster, SimNode, SIM_DEFAULTS, SNAPSHOT_CHAIN_BYTES, type SimClusterOptions, type SimStats, type RaftOptions, type SimApplication } from './cluster';
export { SimNetwork, type NetworkParams, QUIET_NETWORK, ZERO_LATENCY_NETWORK } from './network';
export { SafetyChecker, SafetyViolation, type ViolationKind } from './safety';
export {
  runScenario,
  scenarioForSeed,
  scenarioArbitrary,
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
} from './scenario';
