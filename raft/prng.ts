/**
 * The only source of randomness the core may use: a seeded generator passed in by the caller,
 * so that a seed replays an identical run (the simulator depends on it).
 */
export interface Prng {
  /** A uniformly distributed integer in [0, bound). `bound` is a positive integer. */
  nextInt(bound: number): number;
}

/**
 * sfc32 seeded through splitmix32: small, fast, and good enough for timeouts and fault
 * schedules (not for cryptography).
 */
export class SeededPrng implements Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new TypeError(`seed must be a safe integer, got ${seed}`);
    // The low 32 bits seed the mixer; the high bits (and the sign) are mixed in separately so
    // that every safe-integer seed gives its own stream.
    let state = seed >>> 0;
    const high = Math.floor(seed / 0x1_0000_0000) >>> 0;
    const next = (): number => {
      state = (state + 0x9e3779b9) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    if (high !== 0) {
      state = (state ^ high) >>> 0;
      this.a ^= next();
      this.b ^= next();
      this.c ^= next();
      this.d ^= next();
    }
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t >>> 0;
  }

  nextInt(bound: number): number {
    if (!Number.isSafeInteger(bound) || bound <= 0) {
      throw new TypeError(`bound must be a positive safe integer, got ${bound}`);
    }
    if (bound <= 0x1_0000_0000) {
      // Rejection sampling keeps the distribution uniform.
      const limit = 0x1_0000_0000 - (0x1_0000_0000 % bound);
      for (;;) {
        const x = this.nextUint32();
        if (x < limit) return x % bound;
      }
    }
    const high = this.nextUint32() * 0x1_0000_0000 + this.nextUint32();
    return high % bound;
  }

  /** A float in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  /** A new generator whose stream is independent of this one's future draws. */
  fork(): SeededPrng {
    return new SeededPrng(this.nextUint32() * 0x20_0000 + (this.nextUint32() & 0x1f_ffff));
  }
}
