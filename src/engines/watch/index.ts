export { WatchHub, Watcher, type WatchSink, type WatcherOptions } from './hub';
export * as watchLimits from './limits';
