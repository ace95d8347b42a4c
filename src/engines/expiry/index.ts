export { ProposedExpiries } from './proposed.js';
export { type AdvanceWork, TimeWheel, type TimeWheelOptions, type WheelTimer } from './wheel.js';
export * as wheelLimits from './limits.js';
