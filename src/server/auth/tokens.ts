/**
 * etcd's simple tokens, as one member holds them: a token names a user until it has gone unused
 * for the TTL (each use restarts it, as etcd's simple token keeper does). Tokens are created by
 * the Authenticate command every member applies, so any member accepts a token another issued;
 * they live in memory only (a restarted member forgets them, as etcd's do), and a user's tokens
 * stop working when the user is deleted or its password changes, all of them when auth is
 * disabled. No per-token timers: expiry is checked on use, and one sweep drops the dead ones.
 */
import { randomBytes } from 'node:crypto';
import { simpleTokenPrefixLetters, simpleTokensMax } from './limits.js';

interface TokenRecord {
  readonly user: string;
  expiresAtMs: number;
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** The random part of a new simple token (letters only; the Authenticate entry's index follows a dot). */
export function newTokenPrefix(): string {
  const bytes = randomBytes(simpleTokenPrefixLetters);
  let prefix = '';
  // 256 is not a multiple of 52: the small bias does not matter for 16 letters (~91 bits).
  for (const b of bytes) prefix += LETTERS[b % LETTERS.length];
  return prefix;
}

export class SimpleTokens {
  private readonly tokens = new Map<string, TokenRecord>();

  constructor(private readonly ttlMs: number) {
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new RangeError(`a token TTL must be a positive number of ms, got ${ttlMs}`);
  }

  get size(): number {
    return this.tokens.size;
  }

  /** Whether the table is at simpleTokensMax (Authenticate is then refused before it is proposed). */
  get full(): boolean {
    return this.tokens.size >= simpleTokensMax;
  }

  register(token: string, user: string, nowMs: number): void {
    // Every member registers what the log says, whatever its table holds (the bound is kept
    // where Authenticate arrives); a member whose table is full first drops the expired ones.
    if (this.tokens.size >= simpleTokensMax) this.sweep(nowMs);
    this.tokens.set(token, { user, expiresAtMs: nowMs + this.ttlMs });
  }

  /** The user `token` names, its TTL restarted; undefined when unknown or expired. */
  use(token: string, nowMs: number): string | undefined {
    const record = this.tokens.get(token);
    if (record === undefined) return undefined;
    if (record.expiresAtMs <= nowMs) {
      this.tokens.delete(token);
      return undefined;
    }
    record.expiresAtMs = nowMs + this.ttlMs;
    return record.user;
  }

  invalidateUser(user: string): void {
    for (const [token, record] of this.tokens) if (record.user === user) this.tokens.delete(token);
  }

  clear(): void {
    this.tokens.clear();
  }

  /** Drops expired tokens; returns how many. */
  sweep(nowMs: number): number {
    let dropped = 0;
    for (const [token, record] of this.tokens) {
      if (record.expiresAtMs <= nowMs) {
        this.tokens.delete(token);
        dropped++;
      }
    }
    return dropped;
  }
}
