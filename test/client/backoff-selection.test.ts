/**
 * The client's pure parts, without a network: the reconnect backoff schedule (bounds, jitter
 * range, reset) and the priority server selection, with property tests where invariants hold.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backoff, baseDelayMs, DkvClient, isDkvError, isPreferredOver, preferredServer, reconnectPolicyDefault, type ReconnectPolicy, serversByPreference } from '../../src/client/index.js';

const policyArb = fc
  .record({ initialDelayMs: fc.integer({ min: 0, max: 5_000 }), extra: fc.integer({ min: 0, max: 60_000 }), multiplier: fc.double({ min: 1, max: 10, noNaN: true }), jitter: fc.double({ min: 0, max: 1, noNaN: true }) })
  .map(({ initialDelayMs, extra, multiplier, jitter }): ReconnectPolicy => ({ initialDelayMs, maxDelayMs: initialDelayMs + extra, multiplier, jitter }));

describe('Backoff', () => {
  it('grows by the multiplier from the initial delay up to the cap (no jitter)', () => {
    const backoff = new Backoff({ initialDelayMs: 100, maxDelayMs: 1_000, multiplier: 2, jitter: 0 });
    expect(Array.from({ length: 7 }, () => backoff.next())).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
    backoff.reset();
    expect(backoff.attempts).toBe(0);
    expect(backoff.next()).toBe(100);
  });

  it('draws each delay from [base × (1 − jitter), base], never above maxDelayMs', () => {
    fc.assert(
      fc.property(policyArb, fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 60 }), (policy, randoms) => {
        let i = 0;
        const backoff = new Backoff(policy, () => randoms[i++ % randoms.length]!);
        for (let attempt = 0; attempt < randoms.length; attempt++) {
          const base = baseDelayMs(policy, attempt);
          const delay = backoff.next();
          expect(delay).toBeLessThanOrEqual(base);
          expect(delay).toBeLessThanOrEqual(policy.maxDelayMs);
          expect(delay).toBeGreaterThanOrEqual(base * (1 - policy.jitter) - 1e-9);
        }
      }),
    );
  });

  it('never shrinks its base from one attempt to the next, and reaches the cap', () => {
    fc.assert(
      fc.property(policyArb, (policy) => {
        let previous = -1;
        for (let attempt = 0; attempt < 200; attempt++) {
          const base = baseDelayMs(policy, attempt);
          expect(base).toBeGreaterThanOrEqual(previous);
          previous = base;
        }
        if (policy.multiplier >= 1.1 && policy.initialDelayMs > 0) expect(previous).toBe(policy.maxDelayMs);
      }),
    );
  });

  it('starts over after reset', () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 1, max: 30 }), (policy, steps) => {
        const backoff = new Backoff(policy, () => 0);
        for (let i = 0; i < steps; i++) backoff.next();
        backoff.reset();
        expect(backoff.next()).toBe(policy.initialDelayMs);
      }),
    );
  });

  it('has defaults that satisfy its own rules', () => {
    expect(new Backoff(reconnectPolicyDefault).next()).toBeLessThanOrEqual(reconnectPolicyDefault.initialDelayMs);
  });
});

const serversArb = fc.array(fc.record({ priority: fc.integer({ min: -3, max: 3 }), available: fc.boolean() }), { minLength: 1, maxLength: 8 });

describe('priority selection', () => {
  it('picks an available server no other available server is preferred over, or none when none is available', () => {
    fc.assert(
      fc.property(serversArb, (servers) => {
        const chosen = preferredServer(servers);
        if (servers.every((s) => !s.available)) {
          expect(chosen).toBeUndefined();
          return;
        }
        expect(chosen).toBeDefined();
        expect(servers[chosen!]!.available).toBe(true);
        for (let i = 0; i < servers.length; i++) {
          if (i !== chosen && servers[i]!.available) expect(isPreferredOver(servers, i, chosen)).toBe(false);
        }
      }),
    );
  });

  it('moves back to a recovered server exactly when it is preferred over the current one', () => {
    fc.assert(
      fc.property(serversArb, fc.nat(), (servers, pick) => {
        const down = pick % servers.length;
        const before = preferredServer(servers.map((s, i) => (i === down ? { ...s, available: false } : s)));
        const after = preferredServer(servers.map((s, i) => (i === down ? { ...s, available: true } : s)));
        if (before === undefined || isPreferredOver(servers, down, before)) expect(after).toBe(down);
        else expect(after).toBe(before);
      }),
    );
  });

  it('orders all servers by priority, then configuration order', () => {
    expect(serversByPreference([{ priority: 1, available: true }, { priority: 5, available: false }, { priority: 1, available: true }, { priority: 9, available: true }])).toEqual([3, 1, 0, 2]);
    fc.assert(
      fc.property(serversArb, (servers) => {
        const order = serversByPreference(servers);
        expect([...order].sort((a, b) => a - b)).toEqual(servers.map((_, i) => i));
        for (let i = 1; i < order.length; i++) expect(isPreferredOver(servers, order[i]!, order[i - 1]!)).toBe(false);
      }),
    );
  });
});

describe('options', () => {
  const invalid = (options: unknown): string => {
    try {
      new DkvClient(options as ConstructorParameters<typeof DkvClient>[0]).close();
    } catch (error) {
      expect(isDkvError(error, 'INVALID_ARGUMENT')).toBe(true);
      return (error as Error).message;
    }
    throw new Error('accepted');
  };

  it('refuses bad options with a message naming the field', () => {
    expect(invalid({ servers: [] })).toMatch(/options\.servers/);
    expect(invalid({ servers: [{ address: 'nohost' }] })).toMatch(/servers\[0\]\.address/);
    expect(invalid({ servers: [{ address: 'a:1' }, { address: 'http://a:1' }] })).toMatch(/listed twice/);
    expect(invalid({ servers: [{ address: 'a:1', priority: Number.NaN }] })).toMatch(/priority/);
    expect(invalid({ servers: [{ address: 'a:1' }], reconnect: { maxDelayMs: 1, initialDelayMs: 10 } })).toMatch(/maxDelayMs/);
    expect(invalid({ servers: [{ address: 'a:1' }], reconnect: { jitter: 2 } })).toMatch(/jitter/);
    expect(invalid({ servers: [{ address: 'a:1' }], timeoutMs: 0 })).toMatch(/timeoutMs/);
    expect(invalid({ servers: [{ address: 'a:1' }], tls: { cert: 'x' } })).toMatch(/cert and options\.tls\.key/);
    expect(invalid({ servers: [{ address: 'a:1' }], auth: { username: '', password: 'p' } })).toMatch(/auth/);
  });

  it('accepts a scheme on an address and reports the first server in use', async () => {
    const client = new DkvClient({ servers: [{ address: 'http://127.0.0.1:1', priority: 1 }, { address: '127.0.0.1:2', priority: 5 }] });
    const event = await new Promise((resolve) => client.once('server', resolve));
    expect(event).toMatchObject({ address: '127.0.0.1:2', reason: 'initial' });
    expect(client.server).toBe('127.0.0.1:2');
    client.close();
  });
});
