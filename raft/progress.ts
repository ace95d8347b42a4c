import { assert } from './assert.js';
import { Inflights } from './inflights.js';

/**
 * - `probe`: the leader does not know where the follower's log ends; it sends one append per
 *   heartbeat interval and backs off on rejection.
 * - `replicate`: the follower is in sync; appends are pipelined up to the inflight window.
 * - `snapshot`: the follower needs a snapshot; nothing else is sent until it is reported.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** What the leader knows of one follower's log. */
export class Progress {
  // invariant: 0 <= match < next
  match: number;
  next: number;
  state: ProgressState = 'probe';
  /** In `snapshot` state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** The highest commit index sent to this follower (in an append or a heartbeat). */
  sentCommit = 0;
  /** Heard from since the last CheckQuorum round (always true for the leader itself). */
  recentActive: boolean;
  /** Sending appends is paused until an acknowledgement or heartbeat response arrives. */
  msgAppFlowPaused = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(options: {
    match: number;
    next: number;
    inflights: Inflights;
    isLearner: boolean;
    recentActive: boolean;
  }) {
    this.match = options.match;
    this.next = options.next;
    this.inflights = options.inflights;
    this.isLearner = options.isLearner;
    this.recentActive = options.recentActive;
    this.checkInvariant();
  }

  checkInvariant(): void {
    assert(
      this.match >= 0 && this.match < this.next,
      () => `progress invariant 0 <= match < next broken: match=${this.match} next=${this.next}`,
    );
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      // After a snapshot the follower has at least the snapshot's entries.
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
    this.sentCommit = Math.min(this.sentCommit, this.next - 1);
    this.checkInvariant();
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
    this.checkInvariant();
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
    this.next = Math.max(snapshotIndex + 1, this.match + 1);
    this.sentCommit = snapshotIndex;
    this.checkInvariant();
  }

  /** Records an append of `entries` entries (starting at `next`) carrying `bytes` of payload. */
  sentEntries(entries: number, bytes: number): void {
    switch (this.state) {
      case 'replicate':
        if (entries > 0) {
          this.next += entries;
          this.inflights.add(this.next - 1, bytes);
        }
        // A full window turns further sends into probes until an acknowledgement frees it.
        this.msgAppFlowPaused = this.inflights.full();
        break;
      case 'probe':
        if (entries > 0) this.msgAppFlowPaused = true;
        break;
      case 'snapshot':
        assert(false, 'cannot send entries to a follower waiting for a snapshot');
    }
    this.checkInvariant();
  }

  /** The follower acknowledged `index`; returns whether `match` moved forward. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, index + 1);
    this.checkInvariant();
    return updated;
  }

  /**
   * The follower rejected an append at `rejected`; `matchHint` is the largest index that may
   * match. Returns false when the rejection is stale (out of order) and was ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      // Appends are pipelined: a rejection at or below match is an old, reordered message.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the most recent probe (at next - 1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    this.checkInvariant();
    return true;
  }

  /**
   * Whether sending `commit` could move the follower's commit index: it was not sent one that
   * already covers everything the follower has (up to next - 1).
   */
  canBumpCommit(commit: number): boolean {
    return commit > this.sentCommit && this.sentCommit < this.next - 1;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
      case 'replicate':
        return this.msgAppFlowPaused;
      case 'snapshot':
        return true;
    }
  }

  clone(): Progress {
    const copy = new Progress({
      match: this.match,
      next: this.next,
      inflights: this.inflights.clone(),
      isLearner: this.isLearner,
      recentActive: this.recentActive,
    });
    copy.state = this.state;
    copy.pendingSnapshot = this.pendingSnapshot;
    copy.sentCommit = this.sentCommit;
    copy.msgAppFlowPaused = this.msgAppFlowPaused;
    return copy;
  }

  describe(): string {
    let text = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) text += ' learner';
    if (this.isPaused()) text += ' paused';
    if (this.pendingSnapshot > 0) text += ` pendingSnap=${this.pendingSnapshot}`;
    if (!this.recentActive) text += ' inactive';
    if (this.inflights.count > 0) text += ` inflight=${this.inflights.count}`;
    if (this.inflights.full()) text += '[full]';
    return text;
  }
}
