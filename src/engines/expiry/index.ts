export { type AdvanceWork, TimeWheel, type TimeWheelOptions, type WheelTimer } from './wheel';
export * as wheelLimits from './limits';
