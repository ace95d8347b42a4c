/**
 * Token buckets by key (a user name, a client address): `take(key)` spends one attempt if the
 * key's bucket has one. Buckets refill continuously; the table is bounded (rateBucketsMax), and
 * when full, buckets that have refilled completely are forgotten first (they are the same as new).
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
      bucket = { tokens: this.burst, atMs: nowMs };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((nowMs - bucket.atMs) / 1000) * this.perSecond);
      bucket.atMs = nowMs;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private forgetFull(nowMs: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((nowMs - bucket.atMs) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key);
    }
    // Every bucket is in use: forget the oldest (Map order is insertion order).
    if (this.buckets.size >= this.bucketsMax) {
      const oldest = this.buckets.keys().next();
      if (oldest.done !== true) this.buckets.delete(oldest.value);
    }
  }
}
