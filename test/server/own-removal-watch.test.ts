/**
 * OwnRemovalWatch (src/server/own-removal-watch.ts): a member that removed itself asks its peers'
 * member lists whether it is done, and stops as removed when one says so — from a watch, or from
 * the one question a failed MemberRemove asks. Timers and time are the test's.
 */
import { describe, expect, it } from 'vitest';
import { OwnRemovalWatch, type OwnRemovalWatchHost } from '../../src/server/own-removal-watch.js';

const pollMs = 200;
const watchMs = 1000;

/** A host whose peers answer from `answers` (then: not removed), with a clock and timers run by hand. */
function fakeHost() {
  const state = {
    nowMs: 0,
    timers: [] as Array<{ atMs: number; task: () => void }>,
    asked: 0,
    removedCalls: 0,
    over: false,
    /** What the next questions get, in turn: true/false, or a rejection (no peer answered). */
    answers: [] as Array<boolean | Error>,
  };
  const host: OwnRemovalWatchHost = {
    peersSayRemoved: async () => {
      state.asked++;
      const answer = state.answers.shift() ?? false;
      if (answer instanceof Error) throw answer;
      return answer;
    },
    over: () => state.over,
    removed: () => {
      state.removedCalls++;
      state.over = true;
    },
    now: () => state.nowMs,
    after: (ms, task) => state.timers.push({ atMs: state.nowMs + ms, task }),
    pollMs,
    watchMs,
  };
  /** Moves the clock to the next timer and runs it, then lets its question settle. */
  const next = async (): Promise<boolean> => {
    state.timers.sort((a, b) => a.atMs - b.atMs);
    const timer = state.timers.shift();
    if (timer === undefined) return false;
    state.nowMs = Math.max(state.nowMs, timer.atMs);
    timer.task();
    // Every promise the question chains settles before the next macrotask.
    await new Promise((resolve) => setImmediate(resolve));
    return true;
  };
  /** Runs timers until none is left. */
  const drain = async (): Promise<void> => {
    while (await next());
  };
  return { state, host, next, drain };
}

describe('OwnRemovalWatch', () => {
  it('asks every pollMs until a peer says the member was removed, then stops it as removed once', async () => {
    const { state, host, drain } = fakeHost();
    state.answers.push(false, new Error('no peer answered'), true);
    const watch = new OwnRemovalWatch(host);
    watch.start();
    watch.start(); // one watch at a time
    expect(state.timers).toHaveLength(1);
    await drain();
    expect(state.asked).toBe(3);
    expect(state.removedCalls).toBe(1);
    expect(state.nowMs).toBe(3 * pollMs);
    expect(watch.active).toBe(false);
  });

  it('gives up after watchMs, and a later self-removal starts a new watch that asks again', async () => {
    const { state, host, drain } = fakeHost();
    const watch = new OwnRemovalWatch(host);
    watch.start();
    await drain();
    expect(state.asked).toBe(watchMs / pollMs);
    expect(state.removedCalls).toBe(0);
    expect(watch.active).toBe(false);

    const askedBefore = state.asked;
    state.answers.push(true);
    watch.start();
    await drain();
    expect(state.asked).toBe(askedBefore + 1);
    expect(state.removedCalls).toBe(1);
  });

  it('ends when the node stops, and can start again after', async () => {
    const { state, host, next, drain } = fakeHost();
    const watch = new OwnRemovalWatch(host);
    watch.start();
    await next();
    state.over = true;
    await drain();
    expect(watch.active).toBe(false);
    state.over = false;
    watch.start();
    expect(watch.active).toBe(true);
    expect(state.timers).toHaveLength(1);
  });

  it("askOnce: a peer's list saying so stops the member as removed; no answer or 'not removed' does not", async () => {
    const { state, host } = fakeHost();
    const watch = new OwnRemovalWatch(host);
    state.answers.push(false, new Error('no peer answered'));
    expect(await watch.askOnce()).toBe(false);
    expect(await watch.askOnce()).toBe(false);
    expect(state.removedCalls).toBe(0);
    state.answers.push(true);
    expect(await watch.askOnce()).toBe(true);
    expect(state.removedCalls).toBe(1);
  });
});
