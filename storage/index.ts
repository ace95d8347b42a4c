/**
 * storage/: the front door. Other folders import only from here.
 */
export * from './log/index';
export * from './mvcc/index';
export { crc32c } from './checksum';
