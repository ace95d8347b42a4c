/**
 * The snapshot file (src/server/snapshot-file.ts): without stores it is format 2, which earlier
 * builds restore; with stores, format 3 carries each store's shards after the default store's
 * snapshot. Random contents read back as written; a file whose sections do not add up, or whose
 * bytes changed, is refused with a clear error, never misread.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SNAPSHOT_FILE_MAGIC, SNAPSHOT_FILE_MAGIC_V3, type SnapshotStore, SnapshotFileError, readSnapshotFile, snapshotFileParts } from '../../src/server/snapshot-file.js';

const join = (parts: readonly Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
/** Splits `data` into frames at random points (a state machine snapshot comes as frames). */
const framed = (data: Uint8Array, cuts: number[]): Uint8Array[] => {
  const at = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const frames: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...at, data.length]) {
    frames.push(data.subarray(from, cut));
    from = cut;
  }
  return frames;
};

const storeArb = fc.record({
  name: fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/),
  prefix: bytes(20),
  shards: fc.array(fc.record({ start: bytes(8), end: fc.option(bytes(8), { nil: undefined }), stateMachine: bytes(300) }), { minLength: 1, maxLength: 4 }),
});

/** A file with its hash made right again after `change` (a damaged body a hash would not catch). */
function rehashed(file: Uint8Array, change: (body: Uint8Array) => Uint8Array): Uint8Array {
  const body = change(file.subarray(0, file.length - 32));
  return join([body, createHash('sha256').update(body).digest()]);
}

describe('the snapshot file', () => {
  it('reads back what it was written with: format 2 without stores, 3 with them', () => {
    fc.assert(
      fc.property(bytes(2000), fc.array(fc.nat(), { maxLength: 5 }), fc.array(storeArb, { maxLength: 3 }), (stateMachine, cuts, stores) => {
        const written = stores.map((s): SnapshotStore<Uint8Array[]> => ({ ...s, shards: s.shards.map((shard) => ({ ...shard, stateMachine: framed(shard.stateMachine, cuts) })) }));
        const file = join(snapshotFileParts(framed(stateMachine, cuts), written));
        // etcdctl's own check: a multiple of 512 bytes, plus the 32-byte hash.
        expect((file.length - 32) % 512).toBe(0);
        const magic = stores.length === 0 ? SNAPSHOT_FILE_MAGIC : SNAPSHOT_FILE_MAGIC_V3;
        expect(Buffer.from(file.subarray(0, 8)).equals(Buffer.from(magic))).toBe(true);
        const read = readSnapshotFile(file);
        expect(read).toEqual({ format: stores.length === 0 ? 2 : 3, stateMachine, stores });
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a file whose stores section is cut short or runs on, even with a good hash', () => {
    const store: SnapshotStore<Uint8Array[]> = { name: 'users', prefix: new Uint8Array([1, 2]), shards: [{ start: new Uint8Array([1, 2]), end: undefined, stateMachine: [new Uint8Array(700).fill(7)] }] };
    const file = join(snapshotFileParts([new Uint8Array(100).fill(3)], [store]));
    expect(readSnapshotFile(file).format).toBe(3);
    // The shard's length says more than the file holds.
    const longer = rehashed(file, (body) => {
      const copy = new Uint8Array(body);
      const at = 16 + 100 + 4 + 4 + 5 + 4 + 2 + 4 + 4 + 2 + 1;
      new DataView(copy.buffer).setBigUint64(at, 1n << 40n);
      return copy;
    });
    expect(() => readSnapshotFile(longer)).toThrow(new SnapshotFileError('snapshot file is damaged: its length does not match'));
    // A store count larger than the stores there.
    const more = rehashed(file, (body) => {
      const copy = new Uint8Array(body);
      new DataView(copy.buffer).setUint32(16 + 100, 2);
      return copy;
    });
    expect(() => readSnapshotFile(more)).toThrow(new SnapshotFileError('snapshot file is damaged: a store without a name or shards'));
    // Anything but zeros after the last store.
    const trailing = rehashed(file, (body) => {
      const copy = new Uint8Array(body);
      copy[copy.length - 1] = 9;
      return copy;
    });
    expect(() => readSnapshotFile(trailing)).toThrow(new SnapshotFileError('snapshot file is damaged: its length does not match'));
    // And a changed byte with the old hash.
    const flipped = new Uint8Array(file);
    flipped[200] = flipped[200]! ^ 1;
    expect(() => readSnapshotFile(flipped)).toThrow(new SnapshotFileError('snapshot file is damaged: its SHA-256 does not match'));
  });
});
