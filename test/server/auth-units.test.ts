/** The auth layer's small parts: simple tokens (TTL restarted by use, invalidation) and the login rate limiter. */
import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/server/auth/rate-limit.js';
import { SimpleTokens, newTokenPrefix } from '../../src/server/auth/tokens.js';
import { hashPassword, isPasswordHash, verifyPassword } from '../../src/server/auth/password.js';
import { peerHost } from '../../src/server/auth/service.js';

describe('simple tokens', () => {
  it('expire after the TTL unused, each use restarting it; a user\'s go with the user', () => {
    const tokens = new SimpleTokens(1000);
    tokens.register('a.1', 'alice', 0);
    tokens.register('b.2', 'bob', 0);
    expect(tokens.use('a.1', 900)).toBe('alice');
    expect(tokens.use('a.1', 1800)).toBe('alice'); // restarted at 900
    expect(tokens.use('b.2', 1800)).toBeUndefined(); // unused since 0
    tokens.invalidateUser('alice');
    expect(tokens.use('a.1', 1900)).toBeUndefined();
    expect(tokens.size).toBe(0);
    expect(newTokenPrefix()).toMatch(/^[A-Za-z]{16}$/);
  });
});

describe('login rate limiter', () => {
  it('refills at its rate, up to its burst', () => {
    const limiter = new RateLimiter(2, 1);
    expect([limiter.take('u', 0), limiter.take('u', 0), limiter.take('u', 0)]).toEqual([true, true, false]);
    expect(limiter.take('u', 999)).toBe(false);
    expect(limiter.take('u', 1000)).toBe(true);
  });

  it('never forgets a drained bucket: flooding the table with new keys refuses them instead', () => {
    const limiter = new RateLimiter(10, 5, 100);
    for (let i = 0; i < 10; i++) expect(limiter.take('root', 0)).toBe(true);
    expect(limiter.take('root', 0)).toBe(false);
    for (let i = 0; i < 200; i++) limiter.take(`name-${i}`, 0);
    expect(limiter.take('root', 0)).toBe(false);
    // Once the flood's buckets refill they are forgotten, and new keys get room again.
    expect(limiter.take('newcomer', 10_000)).toBe(true);
  });
});

describe('passwords and addresses', () => {
  it('hashes with a salt, verifies, and reads back only its own format', async () => {
    const a = await hashPassword('secret', 10);
    const b = await hashPassword('secret', 10);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(await verifyPassword('secret', a)).toBe(true);
    expect(await verifyPassword('Secret', a)).toBe(false);
    expect(isPasswordHash(a)).toBe(true);
    expect(isPasswordHash(Buffer.from('$2a$10$abcdefghijklmnopqrstuv'))).toBe(false);
    expect(isPasswordHash(Buffer.from('scrypt$10$8$1$c2FsdA==$' + Buffer.alloc(65).toString('base64')))).toBe(false);
  });

  it('limits logins per address, not per port', () => {
    expect(peerHost('ipv4:127.0.0.1:5555')).toBe('127.0.0.1');
    expect(peerHost('ipv6:[::1]:5555')).toBe('::1');
    expect(peerHost('10.0.0.2:1')).toBe('10.0.0.2');
  });
});
