/**
 * The reconnect delay: exponential backoff with jitter, bounded. Pure apart from the random
 * source it is given, so its schedule is unit-tested without a network or a clock.
 */
import { strict as assert } from 'node:assert';

/** How the wait between attempts grows. */
export interface ReconnectPolicy {
  /** The first delay (ms), before jitter. */
  readonly initialDelayMs: number;
  /** No delay is longer than this (ms), jitter included. */
  readonly maxDelayMs: number;
  /** Each delay is the previous one times this (>= 1). */
  readonly multiplier: number;
  /** 0..1: each delay is drawn uniformly from [base × (1 − jitter), base]. */
  readonly jitter: number;
}

/** The first reconnect delay by default. */
export const reconnectInitialDelayMsDefault = 50;
/** The longest reconnect delay by default. */
export const reconnectMaxDelayMsDefault = 2_000;
/** The growth of the reconnect delay by default. */
export const reconnectMultiplierDefault = 2;
/** The jitter of the reconnect delay by default. */
export const reconnectJitterDefault = 0.2;

/** The default reconnect policy. */
export const reconnectPolicyDefault: ReconnectPolicy = Object.freeze({
  initialDelayMs: reconnectInitialDelayMsDefault,
  maxDelayMs: reconnectMaxDelayMsDefault,
  multiplier: reconnectMultiplierDefault,
  jitter: reconnectJitterDefault,
});

/** Why a policy is not usable, or undefined when it is. */
export function reconnectPolicyProblem(policy: ReconnectPolicy): string | undefined {
  const { initialDelayMs, maxDelayMs, multiplier, jitter } = policy;
  if (!Number.isFinite(initialDelayMs) || initialDelayMs < 0) return `reconnect.initialDelayMs must be a finite number >= 0 (got ${initialDelayMs})`;
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < initialDelayMs) return `reconnect.maxDelayMs must be finite and >= initialDelayMs (got ${maxDelayMs})`;
  if (!Number.isFinite(multiplier) || multiplier < 1) return `reconnect.multiplier must be a finite number >= 1 (got ${multiplier})`;
  if (!(jitter >= 0 && jitter <= 1)) return `reconnect.jitter must be between 0 and 1 (got ${jitter})`;
  return undefined;
}

/**
 * The undelayed base of attempt `attempt` (0 = the first retry): initial × multiplier^attempt,
 * capped at maxDelayMs.
 */
export function baseDelayMs(policy: ReconnectPolicy, attempt: number): number {
  assert(Number.isSafeInteger(attempt) && attempt >= 0);
  // Past the cap the product only grows (multiplier >= 1); stop multiplying before it overflows.
  let delay = policy.initialDelayMs;
  for (let i = 0; i < attempt && delay < policy.maxDelayMs; i++) delay *= policy.multiplier;
  return Math.min(delay, policy.maxDelayMs);
}

/** One sequence of attempts: `next()` gives the delay before the next one, `reset()` starts over. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly policy: ReconnectPolicy,
    private readonly random: () => number = Math.random,
  ) {
    assert(reconnectPolicyProblem(policy) === undefined, reconnectPolicyProblem(policy));
  }

  /** Attempts delayed since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay (ms) before the next attempt; each call moves one attempt on. */
  next(): number {
    const base = baseDelayMs(this.policy, this.attempt);
    if (this.attempt < Number.MAX_SAFE_INTEGER) this.attempt++;
    const r = this.random();
    assert(r >= 0 && r < 1, 'random() must be in [0, 1)');
    const delay = base * (1 - this.policy.jitter * r);
    // invariant: base × (1 − jitter) <= delay <= base <= maxDelayMs
    assert(delay >= 0 && delay <= this.policy.maxDelayMs);
    return delay;
  }

  /** After a success: the next delay is the first one again. */
  reset(): void {
    this.attempt = 0;
  }
}
