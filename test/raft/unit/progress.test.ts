import { describe, expect, it } from 'vitest';
import { Inflights, RaftAssertionError } from '../../../raft/index.js';
import { Progress, type ProgressState } from '../../../raft/progress.js';

function progress(
  match: number,
  next: number,
  options: { state?: ProgressState; messagesMax?: number; bytesMax?: number } = {},
): Progress {
  const pr = new Progress({
    match,
    next,
    inflights: new Inflights(options.messagesMax ?? 256, options.bytesMax ?? 0),
    isLearner: false,
    recentActive: true,
  });
  // Set the state directly, as the leader's bookkeeping would have left it.
  pr.state = options.state ?? 'probe';
  return pr;
}

describe('Progress invariant 0 <= match < next', () => {
  it('is asserted on construction', () => {
    expect(() => progress(5, 5)).toThrow(RaftAssertionError);
    expect(() => progress(6, 5)).toThrow(RaftAssertionError);
    expect(() => progress(-1, 1)).toThrow(RaftAssertionError);
    expect(progress(0, 1).next).toBe(1);
  });

  it('is asserted when checked after outside changes', () => {
    const pr = progress(3, 4);
    pr.next = 3;
    expect(() => pr.checkInvariant()).toThrow(RaftAssertionError);
  });

  it('is asserted by the transitions', () => {
    const pr = progress(3, 4);
    pr.match = 9; // corrupted by a caller
    expect(() => pr.sentEntries(0, 0)).toThrow(RaftAssertionError);
  });
});

describe('Progress state transitions', () => {
  it('becomeProbe from replicate probes right after match', () => {
    const pr = progress(1, 5, { state: 'replicate' });
    pr.inflights.add(4, 10);
    pr.msgAppFlowPaused = true;
    pr.becomeProbe();
    expect([pr.state, pr.match, pr.next, pr.msgAppFlowPaused, pr.inflights.count]).toEqual(['probe', 1, 2, false, 0]);
  });

  it('becomeProbe from snapshot resumes after the pending snapshot', () => {
    const pr = progress(1, 5);
    pr.becomeSnapshot(10);
    pr.becomeProbe();
    expect([pr.state, pr.match, pr.next, pr.pendingSnapshot]).toEqual(['probe', 1, 11, 0]);
  });

  it('becomeProbe from snapshot resumes after match when match passed the snapshot', () => {
    const pr = progress(1, 5);
    pr.becomeSnapshot(10);
    pr.maybeUpdate(12);
    pr.becomeProbe();
    expect([pr.match, pr.next]).toEqual([12, 13]);
  });

  it('becomeReplicate sends from match + 1 with an empty window', () => {
    const pr = progress(1, 5);
    pr.msgAppFlowPaused = true;
    pr.becomeReplicate();
    expect([pr.state, pr.match, pr.next, pr.msgAppFlowPaused]).toEqual(['replicate', 1, 2, false]);
  });

  it('becomeSnapshot records the snapshot and moves next past it', () => {
    const pr = progress(1, 5, { state: 'replicate' });
    pr.inflights.add(4, 1);
    pr.becomeSnapshot(10);
    expect([pr.state, pr.match, pr.next, pr.pendingSnapshot, pr.inflights.count]).toEqual(['snapshot', 1, 11, 10, 0]);
  });

  it('becomeSnapshot never moves next to or below match', () => {
    const pr = progress(20, 21);
    pr.becomeSnapshot(10);
    expect([pr.match, pr.next]).toEqual([20, 21]);
  });
});

describe('Progress.maybeUpdate', () => {
  it.each([
    // match, next, acknowledged -> updated, match, next
    [5, 10, 4, false, 5, 10], // older acknowledgement
    [5, 10, 5, false, 5, 10], // same
    [5, 10, 6, true, 6, 10], // moves match only
    [5, 10, 9, true, 9, 10],
    [5, 10, 10, true, 10, 11], // moves next too
    [5, 10, 15, true, 15, 16],
  ])('match=%i next=%i ack %i -> %s match=%i next=%i', (match, next, ack, updated, wantMatch, wantNext) => {
    const pr = progress(match, next);
    expect(pr.maybeUpdate(ack)).toBe(updated);
    expect([pr.match, pr.next]).toEqual([wantMatch, wantNext]);
  });

  it('unpauses on progress only', () => {
    const pr = progress(5, 10);
    pr.msgAppFlowPaused = true;
    pr.maybeUpdate(5);
    expect(pr.msgAppFlowPaused).toBe(true);
    pr.maybeUpdate(6);
    expect(pr.msgAppFlowPaused).toBe(false);
  });
});

describe('Progress.maybeDecrTo', () => {
  it.each([
    // state, match, next, rejected, hint -> changed, next
    ['replicate', 5, 10, 5, 5, false, 10], // at match: stale
    ['replicate', 5, 10, 4, 4, false, 10], // below match: stale
    ['replicate', 5, 10, 9, 9, true, 6], // back to match + 1, the hint is not used
    ['replicate', 5, 10, 9, 2, true, 6],
    ['probe', 0, 10, 5, 5, false, 10], // not the latest probe: stale
    ['probe', 0, 10, 9, 9, true, 9], // decrement by one
    ['probe', 0, 2, 1, 1, true, 1],
    ['probe', 0, 1, 0, 0, true, 1], // never below 1
    ['probe', 0, 10, 9, 2, true, 3], // jump to the hint + 1
    ['probe', 0, 10, 9, 0, true, 1],
    ['probe', 3, 10, 9, 0, true, 4], // never below match + 1
    ['probe', 0, 10, 9, 20, true, 9], // a hint beyond the rejection is capped by it
  ] as const)('%s match=%i next=%i rejected=%i hint=%i -> %s next=%i', (state, match, next, rejected, hint, changed, wantNext) => {
    const pr = progress(match, next, { state });
    expect(pr.maybeDecrTo(rejected, hint)).toBe(changed);
    expect(pr.next).toBe(wantNext);
    expect(pr.match).toBe(match);
  });

  it('unpauses a probe that was answered, but not on a stale rejection', () => {
    const pr = progress(0, 10);
    pr.msgAppFlowPaused = true;
    expect(pr.maybeDecrTo(5, 5)).toBe(false);
    expect(pr.msgAppFlowPaused).toBe(true);
    expect(pr.maybeDecrTo(9, 9)).toBe(true);
    expect(pr.msgAppFlowPaused).toBe(false);
  });
});

describe('Progress.isPaused', () => {
  it.each([
    ['probe', false, false],
    ['probe', true, true],
    ['replicate', false, false],
    ['replicate', true, true],
    ['snapshot', false, true],
    ['snapshot', true, true],
  ] as const)('%s with msgAppFlowPaused=%s -> %s', (state, paused, want) => {
    const pr = progress(0, 1, { state });
    pr.msgAppFlowPaused = paused;
    expect(pr.isPaused()).toBe(want);
  });
});

describe('Progress.sentEntries', () => {
  it('in probe state pauses after sending entries, not after an empty probe', () => {
    const pr = progress(0, 5);
    pr.sentEntries(0, 0);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(3, 30);
    expect([pr.isPaused(), pr.next, pr.inflights.count]).toEqual([true, 5, 0]);
  });

  it('in replicate state advances next and tracks the message in flight', () => {
    const pr = progress(4, 5, { state: 'replicate' });
    pr.sentEntries(3, 30);
    expect([pr.next, pr.inflights.count, pr.inflights.bytes, pr.isPaused()]).toEqual([8, 1, 30, false]);
    pr.sentEntries(0, 0);
    expect([pr.next, pr.inflights.count]).toEqual([8, 1]);
    // The acknowledgement of index 7 frees the message whose last entry is 7.
    pr.inflights.freeLE(7);
    expect(pr.inflights.count).toBe(0);
  });

  it('in replicate state pauses once the window is full by count or by bytes', () => {
    const byCount = progress(0, 1, { state: 'replicate', messagesMax: 2 });
    byCount.sentEntries(1, 1);
    expect(byCount.isPaused()).toBe(false);
    byCount.sentEntries(1, 1);
    expect(byCount.isPaused()).toBe(true);
    byCount.inflights.freeLE(1);
    byCount.sentEntries(0, 0); // an empty send re-evaluates the window
    expect(byCount.isPaused()).toBe(false);

    const byBytes = progress(0, 1, { state: 'replicate', bytesMax: 100 });
    byBytes.sentEntries(2, 99);
    expect(byBytes.isPaused()).toBe(false);
    byBytes.sentEntries(1, 1);
    expect([byBytes.isPaused(), byBytes.next]).toEqual([true, 4]);
  });

  it('asserts when sending to a follower waiting for a snapshot', () => {
    const pr = progress(0, 1);
    pr.becomeSnapshot(5);
    expect(() => pr.sentEntries(1, 1)).toThrow(RaftAssertionError);
  });
});

describe('Progress.clone and describe', () => {
  it('clone copies every field and the window, independently', () => {
    const pr = progress(3, 4, { state: 'replicate' });
    pr.sentEntries(2, 20);
    pr.recentActive = false;
    const copy = pr.clone();
    expect([copy.state, copy.match, copy.next, copy.recentActive, copy.inflights.count]).toEqual(['replicate', 3, 6, false, 1]);
    copy.maybeUpdate(5);
    copy.inflights.freeLE(5);
    expect([pr.match, pr.inflights.count]).toEqual([3, 1]);
  });

  it('describe summarises the state', () => {
    const pr = progress(3, 4);
    pr.becomeSnapshot(9);
    pr.isLearner = true;
    pr.recentActive = false;
    expect(pr.describe()).toBe('snapshot match=3 next=10 learner paused pendingSnap=9 inactive');
  });
});

describe('Progress.sentCommit and canBumpCommit', () => {
  const make = (match: number, next: number): Progress =>
    new Progress({ match, next, inflights: new Inflights(4, 0), isLearner: false, recentActive: true });

  it('can bump until a commit covering everything up to next - 1 was sent', () => {
    const pr = make(5, 8);
    expect(pr.canBumpCommit(3)).toBe(true);
    pr.sentCommit = 3;
    expect(pr.canBumpCommit(3)).toBe(false); // nothing new
    expect(pr.canBumpCommit(6)).toBe(true);
    pr.sentCommit = 7; // covers next - 1
    expect(pr.canBumpCommit(9)).toBe(false);
  });

  it('is lowered when probing restarts below it and set by a snapshot', () => {
    const pr = make(5, 8);
    pr.sentCommit = 7;
    pr.becomeProbe();
    expect(pr.next).toBe(6);
    expect(pr.sentCommit).toBe(5);
    pr.becomeSnapshot(20);
    expect(pr.sentCommit).toBe(20);
    expect(pr.clone().sentCommit).toBe(20);
  });
});
