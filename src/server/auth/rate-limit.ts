/**
 * Token buckets by key (a user name, a client address): `take(key)` spends one attempt if the
 * key's bucket has one. Buckets refill continuously; the table is bounded (rateBucketsMax). When
 * it is full, only buckets that have refilled completely are forgotten (they are the same as new);
 * a bucket still draining is never forgotten, so flooding the table with new keys cannot give a
 * limited key its attempts back — a new key is refused instead until room frees up.
 */
import { rateBucketsMax } from './limits.js';

interface Bucket {
  tokens: number;
  atMs: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly bucketsMax: number = rateBucketsMax,
  ) {
    if (!(burst >= 1 && perSecond > 0 && bucketsMax >= 1)) throw new RangeError('a rate limiter needs a burst of at least 1, a positive rate and room for a bucket');
  }

  /** Whether `key` may make one more attempt now (and spends it if so). */
  take(key: string, nowMs: number): boolean {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.bucketsMax) this.forgetFull(nowMs);
      if (this.buckets.size >= this.bucketsMax) return false;
      bucket = { tokens: this.burst, atMs: nowMs };
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((nowMs - bucket.atMs) / 1000) * this.perSecond);
      bucket.atMs = nowMs;
      // Most recently used last: forgetFull meets the idle ones first.
      this.buckets.delete(key);
    }
    this.buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forgets buckets that have refilled completely, least recently used first, until there is room for one. */
  private forgetFull(nowMs: number): void {
    for (const [key, bucket] of this.buckets) {
      if (this.buckets.size < this.bucketsMax) return;
      if (bucket.tokens + ((nowMs - bucket.atMs) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key);
    }
  }
}
