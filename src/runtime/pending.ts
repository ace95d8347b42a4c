/**
 * The requests one shard holds on this node, and when each is released. Nothing stays here
 * forever: every write and read has a deadline, and each is released on the first of
 *
 * - its outcome (a write applied here; a read's index applied here);
 * - proof that it can never be applied (`lost`: another entry was applied where it sat);
 * - its deadline (`timeout`, or `leader-failed` after a leader change; outcome unknown);
 * - no leader known when it arrives: a write or a read waits for one (`parked`, `parkedReads`),
 *   refused `no leader` if none is known within `noLeaderWaitElections`;
 * - a leader change: reads asked of the old leader are asked again of the next one (refused
 *   `no leader` if none is known within `noLeaderWaitElections`); forwarded
 *   writes whose place in the log is not known get a short grace (`leaderChangeGraceMs`) to
 *   show up in this node's log, then count as timed out;
 * - a forwarded write refused where it arrived (`unpropose`): it waits for a leader again, or
 *   fails with the refusal when waiting cannot help;
 * - the runtime stopping (`stopped`; outcome unknown).
 *
 * Invariants (asserted): a write with a known position sits above the applied index; counts
 * match the maps they count.
 */
import { type ConfChange, assert } from '../../raft/index.js';
import type { Caller, EngineCommand } from '../engines/index.js';
import { RuntimeError } from './errors.js';

export type WriteCallback<T> = (error: RuntimeError | undefined, result?: T) => void;

export interface WriteWaiter {
  readonly requestId: number;
  /** 'command': a normal entry; 'conf': a configuration change. */
  readonly kind: 'command' | 'conf';
  /** What to propose (the one matching `kind`). */
  command: EngineCommand | undefined;
  /** The client request's caller, carried in the command's envelope (none: the node's own command). */
  caller: Caller | undefined;
  change: ConfChange | undefined;
  /** The envelope or encoded conf change as proposed (set when fed to Raft). */
  data: Uint8Array | undefined;
  readonly bytes: number;
  deadlineMs: number;
  /** The deadline the request came with (`deadlineMs` may be cut after a leader change). */
  readonly requestDeadlineMs: number;
  /** Proposed while this node did not lead: Raft forwarded it. */
  forwarded: boolean;
  /** The log index the entry was appended at, once known here. */
  position: number | undefined;
  /** A leader change happened while it was pending (a timeout then says so). */
  leaderChanged: boolean;
  /** Why it was last refused and parked to go again (its deadline then fails it with this). */
  refusal: RuntimeError | undefined;
  readonly callback: WriteCallback<unknown>;
}

export interface ReadWaiter {
  deadlineMs: number;
  settled: boolean;
  readonly callback: (error: RuntimeError | undefined, readIndex?: number) => void;
}

export interface ReadBatch {
  readonly waiters: ReadWaiter[];
  index: number | undefined;
}

export interface PendingCounts {
  /** Writes and configuration changes held (queued, in Raft, or forwarded). */
  readonly writes: number;
  readonly writeBytes: number;
  /** Forwarded writes whose place in the log is not known yet. */
  readonly forwarded: number;
  readonly reads: number;
  /** ReadIndex rounds in flight or waiting to apply (each holds its reads). */
  readonly readRounds: number;
}

export class PendingRequests {
  /**
   * How a settled request's callback is run: the runtime spreads a large batch (16,000 reads
   * released by one ReadIndex round) over several turns, so answering them never stalls the event
   * loop for longer than an election can wait.
   */
  constructor(private readonly deliver: (run: () => void) => void = (run) => run()) {}

  /** Waiting to be fed to Raft at the next cycle, in arrival order. */
  queue: WriteWaiter[] = [];
  /**
   * Writes that arrived while this node knew no leader, in arrival order: fed again once one is
   * known, or refused with `no leader` when `parkedUntilMs` passes (see noLeaderWaitElections).
   */
  parked: WriteWaiter[] = [];
  parkedUntilMs = 0;
  /** The parked writes' wait ended with no leader: the next feed proposes them (Raft refuses them). */
  feedParkedAsIs = false;
  readonly writes = new Map<number, WriteWaiter>();
  /** Index -> request id of writes whose position is known. */
  readonly positions = new Map<number, number>();
  private forwardedUnknown = 0;
  private writeBytes = 0;

  queuedReads: ReadWaiter[] = [];
  /**
   * Reads that arrived while this node knew no leader, and reads whose round was asked of a
   * leader that lost its leadership: asked (again) of the next leader once one is known (or, with
   * none known when `parkedReadsUntilMs` passes, refused `no leader`).
   */
  parkedReads: ReadWaiter[] = [];
  parkedReadsUntilMs = 0;
  /** The parked reads' wait ended with no leader: the next feed asks them as they are (Raft refuses them). */
  feedReadsAsIs = false;
  readonly readRounds = new Map<string, ReadBatch>();
  readonly readsAwaitingApply: ReadBatch[] = [];
  private readCount = 0;

  counts(): PendingCounts {
    return {
      writes: this.writes.size,
      writeBytes: this.writeBytes,
      forwarded: this.forwardedUnknown,
      reads: this.readCount,
      readRounds: this.readRounds.size + this.readsAwaitingApply.length,
    };
  }

  // ---- Writes -----------------------------------------------------------------------------

  addWrite(waiter: WriteWaiter): void {
    assert(!this.writes.has(waiter.requestId), () => `request id ${waiter.requestId} is pending twice`);
    this.writes.set(waiter.requestId, waiter);
    this.writeBytes += waiter.bytes;
    this.queue.push(waiter);
  }

  /** Raft took the proposal; `position` is its index when this node appended it as leader. */
  proposed(waiter: WriteWaiter, data: Uint8Array, position: number | undefined, appliedIndex: number): void {
    waiter.data = data;
    if (position !== undefined) {
      this.place(waiter, position, appliedIndex);
    } else {
      waiter.forwarded = true;
      this.forwardedUnknown++;
    }
  }

  /** The entry of a pending write showed up in this node's log at `index`. */
  place(waiter: WriteWaiter, index: number, appliedIndex: number): void {
    assert(index > appliedIndex, () => `request ${waiter.requestId} placed at ${index}, at or below the applied index ${appliedIndex}`);
    if (waiter.position === index) return;
    if (waiter.position !== undefined) this.positions.delete(waiter.position);
    else if (waiter.forwarded) this.forwardedUnknown--;
    waiter.position = index;
    // Another pending write that was thought to sit here no longer does (its entry was replaced).
    const displaced = this.positions.get(index);
    if (displaced !== undefined && displaced !== waiter.requestId) {
      const other = this.writes.get(displaced);
      if (other !== undefined) other.position = undefined;
      if (other !== undefined && other.forwarded) this.forwardedUnknown++;
    }
    this.positions.set(index, waiter.requestId);
  }

  /** Removes a write and calls its callback. */
  settleWrite(waiter: WriteWaiter, error: RuntimeError | undefined, result?: unknown): void {
    if (this.writes.get(waiter.requestId) !== waiter) return;
    this.writes.delete(waiter.requestId);
    this.writeBytes -= waiter.bytes;
    if (waiter.position !== undefined) {
      if (this.positions.get(waiter.position) === waiter.requestId) this.positions.delete(waiter.position);
    } else if (waiter.forwarded) {
      this.forwardedUnknown--;
    }
    assert(this.forwardedUnknown >= 0 && this.writeBytes >= 0, 'pending write counts went negative');
    this.deliver(() => waiter.callback(error, result));
  }

  /**
   * A forwarded write came back refused where it arrived (Raft's MsgPropDropped), so it was
   * appended nowhere: it is as if never proposed, with its request's own deadline again (a leader
   * change may have cut it to the grace).
   */
  unpropose(waiter: WriteWaiter): void {
    assert(waiter.data !== undefined && waiter.forwarded && waiter.position === undefined, () => `request ${waiter.requestId} is not a forwarded write of unknown place`);
    waiter.data = undefined;
    waiter.forwarded = false;
    this.forwardedUnknown--;
    waiter.deadlineMs = waiter.requestDeadlineMs;
    waiter.leaderChanged = false;
  }

  /** Fails every queued (not yet proposed) write. */
  failQueued(error: RuntimeError): void {
    const queued = this.queue;
    this.queue = [];
    for (const waiter of queued) this.settleWrite(waiter, error);
  }

  /** After a leader change: forwarded writes not yet seen in the log get `graceUntilMs` at most. */
  leaderChanged(graceUntilMs: number): void {
    for (const waiter of this.writes.values()) {
      if (waiter.data === undefined) continue; // still queued: it goes to the new leader
      waiter.leaderChanged = true;
      if (waiter.position === undefined && waiter.deadlineMs > graceUntilMs) waiter.deadlineMs = graceUntilMs;
    }
  }

  /**
   * Releases writes and reads whose deadline passed. A write never handed to Raft (queued, or
   * parked after a refusal) is known not applied: it fails with the refusal that parked it, else
   * with `no leader`.
   */
  expire(nowMs: number): void {
    const expired: WriteWaiter[] = [];
    for (const waiter of this.writes.values()) if (waiter.deadlineMs <= nowMs) expired.push(waiter);
    for (const waiter of expired) {
      if (waiter.data !== undefined) this.settleWrite(waiter, timeoutError(waiter.leaderChanged ? 'leader-failed' : 'timeout'));
      else this.settleWrite(waiter, waiter.refusal ?? new RuntimeError('no-leader', 'etcdserver: no leader'));
    }
    if (this.readCount === 0) return;
    const expireRead = (waiter: ReadWaiter): void => {
      if (!waiter.settled && waiter.deadlineMs <= nowMs) this.settleRead(waiter, timeoutError('timeout'));
    };
    for (const waiter of this.queuedReads) expireRead(waiter);
    for (const waiter of this.parkedReads) expireRead(waiter);
    for (const batch of this.readRounds.values()) for (const waiter of batch.waiters) expireRead(waiter);
    for (const batch of this.readsAwaitingApply) for (const waiter of batch.waiters) expireRead(waiter);
    this.queuedReads = this.queuedReads.filter((w) => !w.settled);
    this.parkedReads = this.parkedReads.filter((w) => !w.settled);
    // A round whose every read timed out is forgotten (its answer, if it ever comes, serves no one).
    for (const [context, batch] of this.readRounds) if (batch.waiters.every((w) => w.settled)) this.readRounds.delete(context);
    let kept = 0;
    for (const batch of this.readsAwaitingApply) if (batch.waiters.some((w) => !w.settled)) this.readsAwaitingApply[kept++] = batch;
    this.readsAwaitingApply.length = kept;
  }

  // ---- Reads ------------------------------------------------------------------------------

  addRead(waiter: ReadWaiter): void {
    this.readCount++;
    this.queuedReads.push(waiter);
  }

  settleRead(waiter: ReadWaiter, error: RuntimeError | undefined, readIndex?: number): void {
    if (waiter.settled) return;
    waiter.settled = true;
    this.readCount--;
    assert(this.readCount >= 0, 'pending read count went negative');
    this.deliver(() => waiter.callback(error, readIndex));
  }

  /**
   * After a leader change: the reads of rounds asked of the old leader (which will never answer
   * them) wait to be asked again of the next one. A read has no effect, so asking twice is safe,
   * and the new round starts after the read arrived, so it stays linearizable.
   */
  requeueReadRounds(waitUntilMs: number): void {
    if (this.parkedReads.length === 0) this.parkedReadsUntilMs = waitUntilMs;
    for (const batch of this.readRounds.values()) for (const waiter of batch.waiters) if (!waiter.settled) this.parkedReads.push(waiter);
    this.readRounds.clear();
  }

  failReadRounds(error: RuntimeError): void {
    for (const batch of this.readRounds.values()) for (const waiter of batch.waiters) this.settleRead(waiter, error);
    this.readRounds.clear();
  }

  /** Serves every read whose index is applied. */
  releaseReads(appliedIndex: number): void {
    let kept = 0;
    for (const batch of this.readsAwaitingApply) {
      if (batch.index !== undefined && batch.index <= appliedIndex) {
        for (const waiter of batch.waiters) this.settleRead(waiter, undefined, batch.index);
      } else if (batch.waiters.some((w) => !w.settled)) {
        this.readsAwaitingApply[kept++] = batch;
      }
    }
    this.readsAwaitingApply.length = kept;
  }

  /** Fails everything (the runtime stops). */
  failAll(error: RuntimeError): void {
    for (const waiter of [...this.writes.values()]) this.settleWrite(waiter, error);
    this.queue = [];
    for (const waiter of this.queuedReads) this.settleRead(waiter, error);
    this.queuedReads = [];
    for (const waiter of this.parkedReads) this.settleRead(waiter, error);
    this.parkedReads = [];
    this.failReadRounds(error);
    for (const batch of this.readsAwaitingApply) for (const waiter of batch.waiters) this.settleRead(waiter, error);
    this.readsAwaitingApply.length = 0;
    assert(this.writes.size === 0 && this.readCount === 0 && this.positions.size === 0, 'requests left after failing all');
  }
}

/** A request that ran out of time (`timeout`), or did after a leader change (`leader-failed`): etcd's answers. */
export function timeoutError(code: 'timeout' | 'leader-failed'): RuntimeError {
  return new RuntimeError(code, code === 'leader-failed' ? 'request timed out after a leader change' : 'request timed out');
}
