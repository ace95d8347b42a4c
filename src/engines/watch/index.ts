export { WatchHub, Watcher, type WatchSink, type WatcherOptions, watcherOwned } from './hub.js';
export * as watchLimits from './limits.js';
