/**
 * storage/: the front door. Other folders import only from here.
 */
export * from './log/index.js';
export * from './mvcc/index.js';
export { crc32c } from './checksum.js';
