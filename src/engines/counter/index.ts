/** The counter engine's front door. */
export {
  CounterEngine,
  CounterCommandKind,
  COUNTER_COMMAND_VERSION,
  COUNTER_COMMAND_VERSION_TTL,
  counterOutcome,
  deleteCommand,
  encodeCounterValue,
  incrementCommand,
  isInt64,
  parseCounterValue,
  setCommand,
  type CounterEngineOptions,
  type CounterOutcome,
  type CounterTtlScheduler,
} from './engine.js';
export * as counterLimits from './limits.js';
