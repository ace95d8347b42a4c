/**
 * The JWT token provider (`--auth-token jwt,…`): every sign method round trip, tokens made by
 * etcd 3.5's JWT library (golang-jwt v4) verified and reproduced byte for byte, expiry, tampering,
 * alg confusion and `alg: none`, verify-only members, and the option parser's errors.
 */
import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AuthTokenOptionError,
  type JwtSignMethod,
  type JwtTokenOption,
  JwtTokens,
  JwtVerifyOnlyError,
  jwtSignMethods,
  jwtTtlMsDefault,
  parseAuthTokenOption,
  tokenLengthMax,
} from '../../src/server/auth/jwt.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-jwt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function file(contents: string | Buffer, name = `file-${++fileCount}`): string {
  const path = join(dir, name);
  writeFileSync(path, contents);
  return path;
}

interface KeyFiles {
  readonly priv: string;
  /** Undefined for HS*, whose one secret file is priv-key. */
  readonly pub: string | undefined;
}

const spki = { type: 'spki', format: 'pem' } as const;
const pkcs8 = { type: 'pkcs8', format: 'pem' } as const;

function pairFiles(pair: { publicKey: string; privateKey: string }): KeyFiles {
  return { priv: file(pair.privateKey), pub: file(pair.publicKey) };
}

// One key pair per kind, made once: RSA key generation is slow. The private keys come in the
// formats operators have: PKCS#1 and SEC1 ("RSA/EC PRIVATE KEY", what etcd's fixtures hold), PKCS#8.
const rsaKeys = pairFiles(generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: spki, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } }));
const otherRsaKeys = pairFiles(generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }));
const ecKeys: Readonly<Record<'ES256' | 'ES384' | 'ES512', KeyFiles>> = {
  ES256: pairFiles(generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: spki, privateKeyEncoding: pkcs8 })),
  ES384: pairFiles(generateKeyPairSync('ec', { namedCurve: 'P-384', publicKeyEncoding: spki, privateKeyEncoding: { type: 'sec1', format: 'pem' } })),
  ES512: pairFiles(generateKeyPairSync('ec', { namedCurve: 'P-521', publicKeyEncoding: spki, privateKeyEncoding: pkcs8 })),
};
const edKeys = pairFiles(generateKeyPairSync('ed25519', { publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }));

function keysFor(method: JwtSignMethod): KeyFiles {
  if (method.startsWith('RS') || method.startsWith('PS')) return rsaKeys;
  if (method === 'ES256' || method === 'ES384' || method === 'ES512') return ecKeys[method];
  if (method === 'EdDSA') return edKeys;
  return { priv: file(randomBytes(64)), pub: undefined };
}

function jwtOption(text: string): JwtTokenOption {
  const option = parseAuthTokenOption(text);
  if (option.kind !== 'jwt') throw new Error(`expected a jwt option from ${text}`);
  return option;
}

function provider(method: JwtSignMethod, keys: KeyFiles = keysFor(method), extra = ''): JwtTokens {
  const pub = keys.pub === undefined ? '' : `,pub-key=${keys.pub}`;
  return new JwtTokens(jwtOption(`jwt,sign-method=${method}${pub},priv-key=${keys.priv}${extra}`));
}

function optionError(text: string): AuthTokenOptionError {
  try {
    parseAuthTokenOption(text);
  } catch (error) {
    if (error instanceof AuthTokenOptionError) return error;
    throw error;
  }
  throw new Error(`expected an AuthTokenOptionError for ${text}`);
}

const b64 = (text: string): string => Buffer.from(text).toString('base64url');
const decoded = (part: string | undefined): string => Buffer.from(part ?? '', 'base64url').toString('utf8');

/** A token over any header and claims text, signed with HMAC-SHA256 by `secret`. */
function hs256Token(header: string, claims: string, secret: Buffer | string): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const now = 1_750_000_000_123;

describe('every sign method', () => {
  for (const method of jwtSignMethods) {
    it(`${method}: signs a token etcd's way and verifies it; a verify-only member verifies but cannot sign`, () => {
      const keys = keysFor(method);
      const tokens = provider(method, keys);
      expect(tokens.canSign).toBe(true);
      const token = tokens.sign('alice', 17, now);
      expect(tokens.verify(token, now)).toEqual({ user: 'alice', authRevision: 17 });

      const [header, claims, signature] = token.split('.');
      expect(decoded(header)).toBe(`{"alg":"${method}","typ":"JWT"}`);
      expect(decoded(claims)).toBe(`{"exp":${Math.floor((now + jwtTtlMsDefault) / 1000)},"revision":17,"username":"alice"}`);
      // JOSE's r||s for ECDSA: 2 x 32, 48 and 66 bytes, not DER.
      const joseBytes: Partial<Record<JwtSignMethod, number>> = { ES256: 64, ES384: 96, ES512: 132 };
      if (joseBytes[method] !== undefined) expect(Buffer.from(signature ?? '', 'base64url')).toHaveLength(joseBytes[method]!);

      if (keys.pub !== undefined) {
        const verifyOnly = new JwtTokens(jwtOption(`jwt,pub-key=${keys.pub},sign-method=${method}`));
        expect(verifyOnly.canSign).toBe(false);
        expect(verifyOnly.verify(token, now)).toEqual({ user: 'alice', authRevision: 17 });
        expect(() => verifyOnly.sign('alice', 17, now)).toThrow(JwtVerifyOnlyError);
        // priv-key alone: the public key is derived from it, as etcd does.
        const privateOnly = new JwtTokens(jwtOption(`jwt,priv-key=${keys.priv},sign-method=${method}`));
        expect(privateOnly.verify(token, now)).toEqual({ user: 'alice', authRevision: 17 });
        expect(verifyOnly.verify(privateOnly.sign('bob', 3, now), now)).toEqual({ user: 'bob', authRevision: 3 });
      }
      // Another key of the same kind does not verify it.
      const otherKeys = method.startsWith('RS') || method.startsWith('PS') ? otherRsaKeys : method.startsWith('HS') ? keysFor(method) : undefined;
      if (otherKeys !== undefined) expect(provider(method, otherKeys).check(token, now)).toEqual({ ok: false, reason: 'signature' });
    });
  }

  it('sign() refuses what no token should carry', () => {
    const tokens = provider('HS256');
    expect(() => tokens.sign('', 1, now)).toThrow(TypeError);
    expect(() => tokens.sign('u', -1, now)).toThrow(TypeError);
    expect(() => tokens.sign('u', 1.5, now)).toThrow(TypeError);
    expect(() => tokens.sign('u', 1, Number.NaN)).toThrow(TypeError);
    // Never a token that verify() would refuse as too long.
    expect(() => tokens.sign('u'.repeat(tokenLengthMax), 1, now)).toThrow(RangeError);
    expect(() => new JwtTokens({ ...jwtOption(`jwt,sign-method=HS256,priv-key=${keysFor('HS256').priv}`), ttlMs: 0 })).toThrow(TypeError);
  });

  it('writes user names as Go does (HTML-safe escapes) and reads any name back', () => {
    const tokens = provider('HS256');
    const token = tokens.sign('a<b>&c\u2028é', 1, now);
    expect(decoded(token.split('.')[1])).toContain('"username":"a\\u003cb\\u003e\\u0026c\\u2028é"');
    fc.assert(
      fc.property(fc.string({ minLength: 1, unit: 'binary' }), fc.nat(), (user, revision) => {
        expect(tokens.verify(tokens.sign(user, revision, now), now)).toEqual({ user, authRevision: revision });
      }),
    );
  });
});

// Made with etcd 3.5's JWT library (golang-jwt v4, signing as etcd's server/auth/jwt.go does:
// MapClaims{username, revision, exp}); exp 1800000000, user root, auth revision 7.
const etcdVectors = {
  edPrivateKey: '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINIKgLG+oWplL9tDSpOCzgd+1n/sRXl4ZpCiWDWQhSl5\n-----END PRIVATE KEY-----\n',
  edPublicKey: '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAxFmHqmep23Q//We4e1B5QWw0WvboSj671a0m1NtHTC8=\n-----END PUBLIC KEY-----\n',
  ecPublicKey:
    '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsSwOxVJ3b0N5iRQwao79zxzPeCHo\n' +
    'c7DSx3B0QM8PYBEDqYN1wlZmzzmqaRjioK2Ov+OgEl0uxKNBjkpuazVSbw==\n-----END PUBLIC KEY-----\n',
  hsSecret: 'a shared secret of 32+ bytes for HS256 tokens\n',
  EdDSA:
    'eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDAwMDAsInJldmlzaW9uIjo3LCJ1c2VybmFtZSI6InJvb3QifQ.' +
    'atiQm37tus1SboOPylfGMpBHCKec9cECz9MrsbUiJaOcFgPtoSU3THSfiYyXg03jnLIW7C00MK45qX43ZE10Ag',
  ES256:
    'eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDAwMDAsInJldmlzaW9uIjo3LCJ1c2VybmFtZSI6InJvb3QifQ.' +
    'bEWN4q9eLAIvgddwZGRirc9HhoKT6j4P5ys-IZYOCScVv3y2UPwZg8VWLtC85LxLhAwAz5tF_w7fF0n3lrCKKg',
  HS256:
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDAwMDAsInJldmlzaW9uIjo3LCJ1c2VybmFtZSI6InJvb3QifQ.' +
    'ffmS0BclTj-Ht7_ASmjoQS04sTlg_2yO3pfyGg9apro',
} as const;

describe('tokens made by etcd', () => {
  const expMs = 1_800_000_000_000;
  // Five minutes (the default ttl) before exp: our tokens then carry etcd's exp.
  const signedAt = expMs - jwtTtlMsDefault;

  it('verify, and the deterministic methods (EdDSA, HS256) sign the very same bytes', () => {
    const ed = new JwtTokens(jwtOption(`jwt,sign-method=EdDSA,pub-key=${file(etcdVectors.edPublicKey)},priv-key=${file(etcdVectors.edPrivateKey)}`));
    const hs = new JwtTokens(jwtOption(`jwt,sign-method=HS256,priv-key=${file(etcdVectors.hsSecret)}`));
    const es = new JwtTokens(jwtOption(`jwt,sign-method=ES256,pub-key=${file(etcdVectors.ecPublicKey)}`));
    for (const [tokens, token] of [
      [ed, etcdVectors.EdDSA],
      [hs, etcdVectors.HS256],
      [es, etcdVectors.ES256],
    ] as const) {
      expect(tokens.verify(token, signedAt)).toEqual({ user: 'root', authRevision: 7 });
      expect(tokens.check(token, expMs)).toEqual({ ok: false, reason: 'expired' });
    }
    expect(ed.sign('root', 7, signedAt)).toBe(etcdVectors.EdDSA);
    expect(hs.sign('root', 7, signedAt)).toBe(etcdVectors.HS256);
  });

  it('accept a certificate as pub-key, as etcd\'s own tests give one', () => {
    const certificate = [
      '-----BEGIN CERTIFICATE-----',
      'MIIBhTCCASugAwIBAgIUccSCiGVSwGluGqCT4vq8EBrhaJwwCgYIKoZIzj0EAwIw',
      'FzEVMBMGA1UEAwwMZGt2LWp3dC10ZXN0MCAXDTI2MTIwNTAzMzYzNFoYDzIxMjYx',
      'MTExMDMzNjM0WjAXMRUwEwYDVQQDDAxka3Ytand0LXRlc3QwWTATBgcqhkjOPQIB',
      'BggqhkjOPQMBBwNCAASdM+LsqEDnKwY90iZbDF3qpFlPzO217jVeqmA6jdnuToOS',
      'mwrY9e7A+1XYUuk9QEbVhftFTbsy/afzBRNYUSAQo1MwUTAdBgNVHQ4EFgQUt9T7',
      'oWr3frdud8XIhJm2EltWNN0wHwYDVR0jBBgwFoAUt9T7oWr3frdud8XIhJm2EltW',
      'NN0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBv8MiPr5eMPVFG',
      'TtfJxE37ITRd8z2ZQXdYsHv/BAPKywIhAML5kLnhyV3pMEzZ9BPNsKUNBJtRHRMa',
      'kTe+od74pdvT',
      '-----END CERTIFICATE-----',
    ].join('\n');
    const privateKey = [
      '-----BEGIN PRIVATE KEY-----',
      'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3D2WGQ0rECi3VVMU',
      'vVXPQgFYjgyJEdkMXK4AN/Go97+hRANCAASdM+LsqEDnKwY90iZbDF3qpFlPzO21',
      '7jVeqmA6jdnuToOSmwrY9e7A+1XYUuk9QEbVhftFTbsy/afzBRNYUSAQ',
      '-----END PRIVATE KEY-----',
    ].join('\n');
    const tokens = new JwtTokens(jwtOption(`jwt,sign-method=ES256,pub-key=${file(certificate)},priv-key=${file(privateKey)}`));
    expect(tokens.verify(tokens.sign('u', 1, now), now)).toEqual({ user: 'u', authRevision: 1 });
  });
});

describe('expiry', () => {
  it('lasts ttl (default 5 minutes, as etcd) in whole seconds: valid strictly before exp', () => {
    const tokens = provider('HS256', keysFor('HS256'), ',ttl=1h');
    expect(tokens.ttlMs).toBe(3_600_000);
    const token = tokens.sign('u', 1, now);
    const expMs = Math.floor((now + 3_600_000) / 1000) * 1000;
    expect(tokens.verify(token, expMs - 1)).toEqual({ user: 'u', authRevision: 1 });
    expect(tokens.check(token, expMs)).toEqual({ ok: false, reason: 'expired' });
    expect(tokens.verify(token, expMs + 86_400_000)).toBeUndefined();
    expect(provider('HS256').ttlMs).toBe(300_000);
  });

  it('honours nbf when a token has one', () => {
    const secret = randomBytes(32);
    const tokens = new JwtTokens(jwtOption(`jwt,sign-method=HS256,priv-key=${file(secret)}`));
    const token = hs256Token('{"alg":"HS256","typ":"JWT"}', `{"exp":${now / 1000 + 60},"nbf":${Math.ceil(now / 1000) + 10},"revision":1,"username":"u"}`, secret);
    expect(tokens.check(token, now)).toEqual({ ok: false, reason: 'not-yet-valid' });
    expect(tokens.verify(token, now + 20_000)).toEqual({ user: 'u', authRevision: 1 });
  });
});

describe('tampered and forged tokens', () => {
  const tokens = provider('RS256');
  const token = tokens.sign('alice', 5, now);
  const [header = '', claims = '', signature = ''] = token.split('.');

  it('a changed payload, signature or header does not verify', () => {
    const otherClaims = b64(decoded(claims).replace('alice', 'admin'));
    expect(tokens.check(`${header}.${otherClaims}.${signature}`, now)).toEqual({ ok: false, reason: 'signature' });
    const flipped = Buffer.from(signature, 'base64url');
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    expect(tokens.check(`${header}.${claims}.${flipped.toString('base64url')}`, now)).toEqual({ ok: false, reason: 'signature' });
    expect(tokens.check(`${b64('{"alg":"RS256","typ":"JWT","kid":"x"}')}.${claims}.${signature}`, now)).toEqual({ ok: false, reason: 'signature' });
    expect(tokens.check(`${b64('{"alg":"RS512","typ":"JWT"}')}.${claims}.${signature}`, now)).toEqual({ ok: false, reason: 'alg' });
  });

  it('alg confusion: an HS256 token keyed with the RSA public key does not verify under RS256', () => {
    const publicPem = readFileSync(rsaKeys.pub ?? '');
    const claimsText = `{"exp":${Math.floor(now / 1000) + 60},"revision":5,"username":"root"}`;
    expect(tokens.check(hs256Token('{"alg":"HS256","typ":"JWT"}', claimsText, publicPem), now)).toEqual({ ok: false, reason: 'alg' });
    // Claiming RS256 with an HMAC over the public key fails the RSA check instead.
    expect(tokens.check(hs256Token('{"alg":"RS256","typ":"JWT"}', claimsText, publicPem), now)).toEqual({ ok: false, reason: 'signature' });
  });

  it('alg none (any spelling) is refused', () => {
    for (const alg of ['none', 'None', 'NONE']) {
      expect(tokens.check(`${b64(`{"alg":"${alg}","typ":"JWT"}`)}.${claims}.`, now)).toEqual({ ok: false, reason: 'alg' });
    }
    expect(tokens.check(`${b64('{"typ":"JWT"}')}.${claims}.${signature}`, now)).toEqual({ ok: false, reason: 'alg' });
  });

  it('malformed tokens: parts, base64url, JSON, length', () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ['', 'malformed'],
      ['abc', 'malformed'],
      [`${header}.${claims}`, 'malformed'],
      [`${token}.x`, 'malformed'],
      [`${header}=.${claims}.${signature}`, 'malformed'],
      [`${header}.${claims}.${signature.replace(/-/g, '+')}`, signature.includes('-') ? 'malformed' : 'signature'],
      [` ${token}`, 'malformed'],
      [`${b64('[1]')}.${claims}.${signature}`, 'header'],
      [`${b64('{"alg":')}.${claims}.${signature}`, 'header'],
      ['a'.repeat(tokenLengthMax + 1), 'too-long'],
    ];
    for (const [text, reason] of cases) expect({ text, check: tokens.check(text, now) }).toEqual({ text, check: { ok: false, reason } });
  });

  it('a non-canonical base64url spelling of a valid signature is refused', () => {
    // HS256's 32-byte MAC is 43 characters: the last carries 2 unused bits; setting one decodes
    // to the same bytes, and must still not verify.
    const hs = provider('HS256');
    const good = hs.sign('u', 1, now);
    const last = good.at(-1) ?? 'A';
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = alphabet[alphabet.indexOf(last) ^ 1] ?? 'A';
    const spelled = `${good.slice(0, -1)}${twin}`;
    expect(Buffer.from(spelled.split('.')[2] ?? '', 'base64url')).toEqual(Buffer.from(good.split('.')[2] ?? '', 'base64url'));
    expect(hs.check(spelled, now)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('claims missing or of the wrong type, crit headers', () => {
    const secret = randomBytes(32);
    const hs = new JwtTokens(jwtOption(`jwt,sign-method=HS256,priv-key=${file(secret)}`));
    const exp = Math.floor(now / 1000) + 60;
    const header = '{"alg":"HS256","typ":"JWT"}';
    expect(hs.verify(hs256Token(header, `{"exp":${exp},"revision":1,"username":"u"}`, secret), now)).toEqual({ user: 'u', authRevision: 1 });
    for (const claimsText of [
      `{"exp":${exp},"revision":1}`,
      `{"exp":${exp},"username":"u"}`,
      '{"revision":1,"username":"u"}',
      `{"exp":${exp},"revision":1,"username":""}`,
      `{"exp":${exp},"revision":1,"username":7}`,
      `{"exp":${exp},"revision":-1,"username":"u"}`,
      `{"exp":${exp},"revision":1.5,"username":"u"}`,
      `{"exp":${exp},"revision":"1","username":"u"}`,
      `{"exp":"${exp}","revision":1,"username":"u"}`,
      `{"exp":${exp},"nbf":"soon","revision":1,"username":"u"}`,
      '[1,2]',
      'null',
      'not json',
    ]) {
      expect({ claimsText, check: hs.check(hs256Token(header, claimsText, secret), now) }).toEqual({ claimsText, check: { ok: false, reason: 'claims' } });
    }
    expect(hs.check(hs256Token('{"alg":"HS256","typ":"JWT","crit":["exp"]}', `{"exp":${exp},"revision":1,"username":"u"}`, secret), now)).toEqual({
      ok: false,
      reason: 'header',
    });
  });

  for (const method of ['RS256', 'ES256', 'EdDSA', 'HS256'] as const) {
    it(`${method}: any one-character change, deletion or insertion of a valid token fails to verify (property)`, () => {
      const signer = provider(method);
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ';
      fc.assert(
        fc.property(
          fc.string({ minLength: 1, maxLength: 12 }),
          fc.nat({ max: 1_000_000 }),
          fc.nat(),
          fc.constantFrom(...alphabet),
          fc.constantFrom('replace', 'delete', 'insert'),
          (user, revision, position, character, edit) => {
            const good = signer.sign(user, revision, now);
            const at = position % good.length;
            const mutated =
              edit === 'replace' ? good.slice(0, at) + character + good.slice(at + 1) : edit === 'delete' ? good.slice(0, at) + good.slice(at + 1) : good.slice(0, at) + character + good.slice(at);
            fc.pre(mutated !== good);
            expect(signer.verify(mutated, now)).toBeUndefined();
          },
        ),
        { numRuns: method === 'RS256' ? 150 : 400 },
      );
    });
  }
});

describe('--auth-token parsing', () => {
  it('reads simple, and jwt with its options in any order', () => {
    expect(parseAuthTokenOption('simple')).toEqual({ kind: 'simple' });
    const option = jwtOption(`jwt,ttl=90s,sign-method=ES384,priv-key=${ecKeys.ES384.priv},pub-key=${ecKeys.ES384.pub}`);
    expect(option).toMatchObject({ kind: 'jwt', signMethod: 'ES384', ttlMs: 90_000 });
    expect(option.publicKey.type).toBe('public');
    expect(option.privateKey?.type).toBe('private');
    expect(jwtOption(`jwt,sign-method=RS256,pub-key=${rsaKeys.pub}`).privateKey).toBeUndefined();
    expect(jwtOption(`jwt,sign-method=HS512,priv-key=${keysFor('HS512').priv}`).publicKey.type).toBe('secret');
    for (const [ttl, ms] of [
      ['5m', 300_000],
      ['300s', 300_000],
      ['1h30m', 5_400_000],
      ['1.5h', 5_400_000],
      ['1500ms', 1500],
    ] as const) {
      expect(jwtOption(`jwt,sign-method=HS256,priv-key=${keysFor('HS256').priv},ttl=${ttl}`).ttlMs).toBe(ms);
    }
  });

  const weakRsa = pairFiles(generateKeyPairSync('rsa', { modulusLength: 1024, publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }));
  const missing = join(dir, 'missing.pem');
  const hsSecret = (): string => keysFor('HS256').priv;
  const cases = (): ReadonlyArray<readonly [string, string, string, RegExp]> => [
    ['not a kind', 'bogus', 'auth-token', /must be "simple" or "jwt,/],
    ['options after simple', 'simple,ttl=5m', 'simple', /takes no options/],
    ['no sign method', `jwt,priv-key=${hsSecret()}`, 'sign-method', /must be given, one of RS256, .*EdDSA, HS256/],
    ['unknown method', `jwt,sign-method=RS257,priv-key=${rsaKeys.priv}`, 'sign-method', /must be one of .* got "RS257"/],
    ['method in lower case', `jwt,sign-method=rs256,priv-key=${rsaKeys.priv}`, 'sign-method', /got "rs256"/],
    ['unknown option', `jwt,sign-method=RS256,priv-key=${rsaKeys.priv},pubkey=${rsaKeys.pub}`, 'pubkey', /unknown option; jwt takes pub-key, priv-key, sign-method, ttl/],
    ['option without =', `jwt,sign-method=RS256,priv-key=${rsaKeys.priv},ttl`, 'jwt', /"ttl" must be one key=value/],
    ['repeated option', `jwt,sign-method=RS256,sign-method=RS256,priv-key=${rsaKeys.priv}`, 'sign-method', /given more than once/],
    ['empty value', `jwt,sign-method=RS256,priv-key=`, 'priv-key', /must not be empty/],
    ['no key', 'jwt,sign-method=RS256', 'pub-key', /must be given for RS256/],
    ['unreadable pub-key', `jwt,sign-method=RS256,pub-key=${missing}`, 'pub-key', /cannot read ".*missing.pem": ENOENT/],
    ['unreadable priv-key', `jwt,sign-method=RS256,priv-key=${missing}`, 'priv-key', /cannot read ".*missing.pem": ENOENT/],
    ['a private key as pub-key', `jwt,sign-method=RS256,pub-key=${rsaKeys.priv}`, 'pub-key', /holds a private key/],
    ['a public key as priv-key', `jwt,sign-method=RS256,priv-key=${rsaKeys.pub}`, 'priv-key', /holds no unencrypted PEM private key/],
    ['not PEM', `jwt,sign-method=RS256,pub-key=${file('hello')}`, 'pub-key', /holds no PEM public key or certificate/],
    ['keys of two pairs', `jwt,sign-method=RS256,pub-key=${otherRsaKeys.pub},priv-key=${rsaKeys.priv}`, 'pub-key', /is not the public key of priv-key/],
    ['RSA method, EC key', `jwt,sign-method=PS256,pub-key=${ecKeys.ES256.pub}`, 'pub-key', /PS256 needs an RSA key, got ec/],
    ['short RSA key', `jwt,sign-method=RS256,priv-key=${weakRsa.priv}`, 'priv-key', /at least 2048 bits, got 1024/],
    ['EC key on the wrong curve', `jwt,sign-method=ES256,priv-key=${ecKeys.ES384.priv}`, 'priv-key', /ES256 needs an EC key on curve prime256v1, got ec on secp384r1/],
    ['EC method, RSA key', `jwt,sign-method=ES512,pub-key=${rsaKeys.pub}`, 'pub-key', /ES512 needs an EC key on curve secp521r1, got rsa/],
    ['EdDSA, EC key', `jwt,sign-method=EdDSA,pub-key=${ecKeys.ES256.pub}`, 'pub-key', /EdDSA needs an Ed25519 key, got ec/],
    ['HMAC with pub-key', `jwt,sign-method=HS256,pub-key=${hsSecret()},priv-key=${hsSecret()}`, 'pub-key', /one shared secret/],
    ['HMAC without its secret', 'jwt,sign-method=HS384', 'priv-key', /must be given for HS384/],
    ['HMAC secret too short', `jwt,sign-method=HS512,priv-key=${file(randomBytes(63))}`, 'priv-key', /holds 63 bytes; HS512 needs at least 64/],
    ['ttl not a duration', `jwt,sign-method=HS256,priv-key=${hsSecret()},ttl=forever`, 'ttl', /must be a duration such as 5m or 300s, got "forever"/],
    ['ttl under a second', `jwt,sign-method=HS256,priv-key=${hsSecret()},ttl=500ms`, 'ttl', /must be between 1s and 8760h/],
    ['ttl over a year', `jwt,sign-method=HS256,priv-key=${hsSecret()},ttl=9000h`, 'ttl', /must be between 1s and 8760h/],
    ['key file too large', `jwt,sign-method=RS256,pub-key=${file(Buffer.alloc(65 * 1024, 65))}`, 'pub-key', /more than a key file's 65536/],
  ];

  it('refuses bad values with one error naming the option', () => {
    for (const [title, text, option, message] of cases()) {
      const error = optionError(text);
      expect({ title, option: error.option }).toEqual({ title, option });
      expect(error.message, title).toMatch(message);
      // The kind is the whole value, so its message names no option; the flag's name comes first.
      if (option !== 'auth-token') expect(error.message.startsWith(`${option}: `), title).toBe(true);
    }
  });
});
