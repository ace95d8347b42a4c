export { WatchHub, Watcher, type WatchSink, type WatcherOptions } from './hub.js';
export * as watchLimits from './limits.js';
