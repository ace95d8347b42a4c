/**
 * The real KV state machine as a simulated node's application: committed entries go through
 * `KvStateMachine.apply` over an `MvccStore`, exactly as the shard host applies them, and Raft
 * snapshots carry the store's real snapshot encoding (`encodeSnapshot` / `restoreSnapshot`), so a
 * restarted or lagging node is rebuilt from the same bytes a server would ship.
 */
import type { Entry } from '../../../raft/index';
import { type AppliedCommand, KvStateMachine } from '../../../src/engines/kv/state-machine';
import { MvccStore, encodeSnapshot, restoreSnapshot } from '../../../storage/index';
import type { SimApplication } from '../cluster';

/** What the run wants to hear from a node's application. */
export interface KvAppObserver {
  /** A normal entry was applied here (its outcome, for waiting clients and watch streams). */
  applied(node: number, applied: AppliedCommand, entry: Entry): void;
  /** The state was replaced by a snapshot's (watch streams re-read the history). */
  replaced(node: number): void;
}

const FRAME_LENGTH_BYTES = 4;

/** Snapshot frames as one byte string: u32 length (big-endian) before each frame. */
export function joinSnapshotFrames(frames: Iterable<Uint8Array>): Uint8Array {
  const list = [...frames];
  const total = list.reduce((sum, f) => sum + FRAME_LENGTH_BYTES + f.byteLength, 0);
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  let at = 0;
  for (const frame of list) {
    view.setUint32(at, frame.byteLength);
    bytes.set(frame, at + FRAME_LENGTH_BYTES);
    at += FRAME_LENGTH_BYTES + frame.byteLength;
  }
  return bytes;
}

export function splitSnapshotFrames(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (at + FRAME_LENGTH_BYTES > bytes.byteLength) throw new TypeError('snapshot bytes end inside a frame length');
    const length = view.getUint32(at);
    const start = at + FRAME_LENGTH_BYTES;
    if (start + length > bytes.byteLength) throw new TypeError('snapshot bytes end inside a frame');
    frames.push(bytes.subarray(start, start + length));
    at = start + length;
  }
  return frames;
}

export class SimKvApplication implements SimApplication {
  /** Undefined while the process is down or a snapshot is being restored. */
  private current: KvStateMachine | undefined = new KvStateMachine();
  /** Bumped on every crash and restore: a restore finishing for an older incarnation is ignored. */
  private generation = 0;

  constructor(
    readonly nodeId: number,
    private readonly observer: KvAppObserver,
  ) {}

  /** The state machine, when the node has one (up and not restoring). */
  get machine(): KvStateMachine | undefined {
    return this.current;
  }

  get appliedIndex(): number {
    return this.current?.appliedIndex ?? 0;
  }

  apply(entry: Entry): void {
    const machine = this.current;
    // Raft hands out no committed entries while a snapshot is pending, and the cluster awaits
    // every restore before its next event.
    if (machine === undefined) throw new TypeError(`node ${this.nodeId} applied entry ${entry.index} without a state machine`);
    if (entry.type === 'conf-change') {
      // Membership is the cluster's business; the store only records that the index is applied.
      if (entry.index > machine.appliedIndex) machine.mvcc.appliedIndex = entry.index;
      return;
    }
    const applied = machine.apply(entry);
    if (applied !== undefined) this.observer.applied(this.nodeId, applied, entry);
  }

  snapshot(): Uint8Array {
    const machine = this.current;
    if (machine === undefined) throw new TypeError(`node ${this.nodeId} has no state to snapshot`);
    return joinSnapshotFrames(encodeSnapshot(machine.mvcc));
  }

  restore(data: Uint8Array): Promise<void> | void {
    const generation = ++this.generation;
    if (data.byteLength === 0) {
      this.current = new KvStateMachine(new MvccStore());
      this.observer.replaced(this.nodeId);
      return;
    }
    this.current = undefined;
    return restoreSnapshot(splitSnapshotFrames(data)).then((store) => {
      if (generation !== this.generation) return;
      this.current = new KvStateMachine(store);
      this.observer.replaced(this.nodeId);
    });
  }

  crash(): void {
    this.generation++;
    this.current = undefined;
  }
}
