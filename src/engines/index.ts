/**
 * The engines' front door: the Engine interface every engine implements, and the engines. The
 * shard runtime (src/runtime) composes them into a shard's state machine.
 */
export { type ApplyContext, type Engine, type EngineCommand, EngineId, type LeaderContext, UnknownCommandError } from './engine';
export { KvEngine } from './kv/index';
export { MetaEngine } from './meta/index';
export { type AdvanceWork, TimeWheel, type TimeWheelOptions, type WheelTimer, wheelLimits } from './expiry/index';
