export {
  LeaseEngine,
  LeaseCommandKind,
  LEASE_COMMAND_VERSION,
  grantCommand,
  revokeCommand,
  renewCommand,
  expireCommand,
  leaseOutcome,
  type Lease,
  type LeaseOutcome,
  type LeaseEngineOptions,
} from './engine.js';
export * as leaseLimits from './limits.js';
