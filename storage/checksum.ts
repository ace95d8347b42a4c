/**
 * CRC-32C (Castagnoli), the checksum etcd uses for HashKV and that guards every record the log
 * store writes. Table-driven, one byte per step: fast enough for records and snapshots, and the
 * same answer on every platform.
 */

const POLYNOMIAL_REVERSED = 0x82f63b78;

const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL_REVERSED : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * Extends a running CRC-32C with `data`. Start with `crc32c(first)` and chain with
 * `crc32c(next, previous)`; the result is an unsigned 32-bit integer.
 */
export function crc32c(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) crc = TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}
