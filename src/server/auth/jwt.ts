/**
 * etcd's `--auth-token` setting and its JWT token provider, made with node:crypto only.
 *
 * A token is what etcd's server/auth/jwt.go (golang-jwt) writes, byte for byte for the
 * deterministic methods (RS*, EdDSA, HS*): header `{"alg":"RS256","typ":"JWT"}`, claims
 * `{"exp":<seconds>,"revision":<auth revision>,"username":"<user>"}` (Go marshals a map with its
 * keys sorted and escapes <, > and & in strings), each base64url without padding, then the
 * signature. So a DKV member verifies a token an etcd member signed with the same key, and back.
 *
 * Verification is stricter than golang-jwt where that costs no compatibility: the header's `alg`
 * must be the configured method exactly (never `none`, never an HMAC over a public key), every
 * part must be canonical base64url (so no two spellings of one token verify), and the three
 * claims must be there with their types.
 */
import {
  type KeyObject,
  constants,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  sign as signBytes,
  timingSafeEqual,
  verify as verifyBytes,
} from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

// ---------------------------------------------------------------------------------------------
// Limits (units last)

/**
 * The longest token looked at, checked before any parsing. gRPC's default metadata limit is
 * 8 KiB, so a longer token never arrives from a client anyway; an RS512 token of a 4096-bit key
 * and a 1 KiB user name is under 2,000 characters.
 */
export const tokenLengthMax = 8192;
/** A key file larger than this is the wrong file (a PEM key or certificate chain is a few KiB). */
export const keyFileBytesMax = 64 * 1024;
/** etcd's default JWT lifetime (its DefaultTTL). */
export const jwtTtlMsDefault = 5 * 60_000;
/** `exp` counts whole seconds: a shorter lifetime could issue tokens that are already expired. */
export const jwtTtlMsMin = 1000;
/** A year: longer is a typo, and a leaked token would stay good for that long. */
export const jwtTtlMsMax = 365 * 24 * 3_600_000;
/** RSA keys shorter than this are breakable; golang-jwt takes any, DKV refuses them. */
export const rsaModulusBitsMin = 2048;

if (jwtTtlMsMin > jwtTtlMsDefault || jwtTtlMsDefault > jwtTtlMsMax) {
  throw new Error('the default JWT lifetime must lie within its limits');
}

// ---------------------------------------------------------------------------------------------
// Sign methods

type MethodFamily = 'rsa' | 'rsa-pss' | 'ecdsa' | 'eddsa' | 'hmac';

interface MethodSpec {
  readonly family: MethodFamily;
  /** node:crypto's digest name; undefined for EdDSA, which hashes internally. */
  readonly hash: 'sha256' | 'sha384' | 'sha512' | undefined;
  /** ECDSA: the curve (OpenSSL's name, as KeyObject reports it) and its JOSE signature length. */
  readonly curve?: string;
  readonly signatureBytes?: number;
  /** HMAC: RFC 7518 3.2's shortest key, the hash's output size. */
  readonly secretBytesMin?: number;
}

const methodSpecs = {
  RS256: { family: 'rsa', hash: 'sha256' },
  RS384: { family: 'rsa', hash: 'sha384' },
  RS512: { family: 'rsa', hash: 'sha512' },
  PS256: { family: 'rsa-pss', hash: 'sha256' },
  PS384: { family: 'rsa-pss', hash: 'sha384' },
  PS512: { family: 'rsa-pss', hash: 'sha512' },
  ES256: { family: 'ecdsa', hash: 'sha256', curve: 'prime256v1', signatureBytes: 64 },
  ES384: { family: 'ecdsa', hash: 'sha384', curve: 'secp384r1', signatureBytes: 96 },
  ES512: { family: 'ecdsa', hash: 'sha512', curve: 'secp521r1', signatureBytes: 132 },
  EdDSA: { family: 'eddsa', hash: undefined },
  HS256: { family: 'hmac', hash: 'sha256', secretBytesMin: 32 },
  HS384: { family: 'hmac', hash: 'sha384', secretBytesMin: 48 },
  HS512: { family: 'hmac', hash: 'sha512', secretBytesMin: 64 },
} as const satisfies Record<string, MethodSpec>;

/** The JWT sign methods etcd accepts in `sign-method=` (golang-jwt's names; EdDSA is Ed25519). */
export type JwtSignMethod = keyof typeof methodSpecs;
export const jwtSignMethods = Object.keys(methodSpecs) as readonly JwtSignMethod[];

function isSignMethod(text: string): text is JwtSignMethod {
  return Object.hasOwn(methodSpecs, text);
}

function specOf(method: JwtSignMethod): MethodSpec {
  return methodSpecs[method];
}

// ---------------------------------------------------------------------------------------------
// --auth-token

/** The JWT provider's settings: `--auth-token jwt,…` parsed and its key files loaded. */
export interface JwtTokenOption {
  readonly kind: 'jwt';
  readonly signMethod: JwtSignMethod;
  /**
   * What verifies: the public key (from pub-key, or derived from priv-key when pub-key is not
   * given, as etcd does); for HS* the shared secret itself.
   */
  readonly publicKey: KeyObject;
  /** What signs; undefined on a verify-only member (pub-key alone). For HS*, the same secret. */
  readonly privateKey?: KeyObject | undefined;
  /** Token lifetime (`ttl=`, etcd's default 5 minutes). */
  readonly ttlMs: number;
}

/** `--auth-token`: etcd's simple tokens (the server's token table), or signed JWTs. */
export type AuthTokenOption = { readonly kind: 'simple' } | JwtTokenOption;

/** A bad `--auth-token` value; `option` names the part at fault (`sign-method`, `pub-key`, …). */
export class AuthTokenOptionError extends Error {
  override readonly name = 'AuthTokenOptionError';
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message);
  }
}

const jwtOptionKeys = ['pub-key', 'priv-key', 'sign-method', 'ttl'] as const;
type JwtOptionKey = (typeof jwtOptionKeys)[number];

function isJwtOptionKey(key: string): key is JwtOptionKey {
  return (jwtOptionKeys as readonly string[]).includes(key);
}

function optionError(option: string, problem: string): never {
  throw new AuthTokenOptionError(option, `${option}: ${problem}`);
}

/** The token kind is the value itself, so its message names no option (the caller names the flag). */
function kindError(kind: string): never {
  throw new AuthTokenOptionError('auth-token', `must be "simple" or "jwt,sign-method=…,pub-key=…,priv-key=…", got "${kind}"`);
}

/**
 * Parses etcd's `--auth-token` value: `simple`, or
 * `jwt,pub-key=PATH,priv-key=PATH,sign-method=METHOD[,ttl=DURATION]` (etcd 3.4/3.5), and reads
 * the key files. As in etcd, either key may be left out: pub-key alone makes a verify-only
 * member, priv-key alone derives the public key; HS* take their secret, the raw bytes of one
 * file, as priv-key. Unlike etcd (which only warns), an unknown option is an error, since a typo
 * there would otherwise drop a key or the lifetime silently.
 * Throws AuthTokenOptionError naming the option at fault.
 */
export function parseAuthTokenOption(text: string): AuthTokenOption {
  const [kind = '', ...items] = text.trim().split(',');
  if (kind === 'simple') {
    if (items.length > 0) optionError('simple', `takes no options, got "${items.join(',')}"`);
    return { kind: 'simple' };
  }
  if (kind !== 'jwt') kindError(kind);
  const options = jwtOptionsOf(items);
  const methodText = options.get('sign-method');
  if (methodText === undefined) optionError('sign-method', `must be given, one of ${jwtSignMethods.join(', ')}`);
  if (!isSignMethod(methodText)) optionError('sign-method', `must be one of ${jwtSignMethods.join(', ')}, got "${methodText}"`);
  const ttlText = options.get('ttl');
  const ttlMs = ttlText === undefined ? jwtTtlMsDefault : ttlOf(ttlText);
  const keys = keysOf(methodText, options.get('pub-key'), options.get('priv-key'));
  return { kind: 'jwt', signMethod: methodText, ...keys, ttlMs };
}

/** `key=value` items, split as etcd does (one `=` each, no repeats). */
function jwtOptionsOf(items: readonly string[]): Map<JwtOptionKey, string> {
  const options = new Map<JwtOptionKey, string>();
  for (const item of items) {
    const parts = item.split('=');
    const [key = '', value = ''] = parts;
    if (parts.length !== 2) optionError('jwt', `"${item}" must be one key=value (a path with "=" or "," cannot be given)`);
    if (!isJwtOptionKey(key)) optionError(key === '' ? 'jwt' : key, `unknown option; jwt takes ${jwtOptionKeys.join(', ')}`);
    if (options.has(key)) optionError(key, 'is given more than once');
    if (value.trim() === '') optionError(key, 'must not be empty');
    options.set(key, value.trim());
  }
  return options;
}

const goDurationUnitsMs: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const goDurationPattern = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

/** A Go duration (`5m`, `300s`, `1h30m`, `1.5h`), as etcd's time.ParseDuration reads `ttl=`. */
function ttlOf(text: string): number {
  if (!goDurationPattern.test(text)) optionError('ttl', `must be a duration such as 5m or 300s, got "${text}"`);
  let totalMs = 0;
  for (const match of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) totalMs += Number(match[1]) * goDurationUnitsMs[match[2]!]!;
  const ms = Math.floor(totalMs);
  if (ms < jwtTtlMsMin || ms > jwtTtlMsMax) optionError('ttl', `must be between 1s and ${jwtTtlMsMax / 3_600_000}h, got "${text}"`);
  return ms;
}

function readKeyFile(option: 'pub-key' | 'priv-key', path: string): Buffer {
  try {
    const size = statSync(path).size;
    if (size > keyFileBytesMax) optionError(option, `"${path}" is ${size} bytes, more than a key file's ${keyFileBytesMax}`);
    return readFileSync(path);
  } catch (error) {
    if (error instanceof AuthTokenOptionError) throw error;
    return optionError(option, `cannot read "${path}": ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

function keysOf(method: JwtSignMethod, publicPath: string | undefined, privatePath: string | undefined): Pick<JwtTokenOption, 'publicKey' | 'privateKey'> {
  const spec = specOf(method);
  if (spec.family === 'hmac') return secretOf(method, spec, publicPath, privatePath);
  if (publicPath === undefined && privatePath === undefined) optionError('pub-key', `must be given for ${method} (with priv-key to sign, alone to verify only)`);
  const privateKey = privatePath === undefined ? undefined : privateKeyOf(privatePath);
  const publicKey = publicPath === undefined ? undefined : publicKeyOf(publicPath);
  if (privateKey !== undefined) checkKeyFits(method, spec, 'priv-key', privateKey);
  if (publicKey !== undefined) checkKeyFits(method, spec, 'pub-key', publicKey);
  const derived = privateKey === undefined ? undefined : createPublicKey(privateKey);
  if (publicKey !== undefined && derived !== undefined && !sameKey(publicKey, derived)) {
    optionError('pub-key', `"${publicPath}" is not the public key of priv-key "${privatePath}"`);
  }
  const verifying = publicKey ?? derived;
  if (verifying === undefined) throw new TypeError('a key was checked to be given');
  return { publicKey: verifying, privateKey };
}

/** HS*: the raw bytes of the priv-key file are the shared secret, as etcd reads them. */
function secretOf(method: JwtSignMethod, spec: MethodSpec, publicPath: string | undefined, privatePath: string | undefined): Pick<JwtTokenOption, 'publicKey' | 'privateKey'> {
  if (publicPath !== undefined) optionError('pub-key', `${method} has one shared secret: give its file as priv-key, without pub-key`);
  if (privatePath === undefined) optionError('priv-key', `must be given for ${method}: the file holding the shared secret`);
  const secret = readKeyFile('priv-key', privatePath);
  const bytesMin = spec.secretBytesMin ?? 0;
  if (secret.length < bytesMin) optionError('priv-key', `"${privatePath}" holds ${secret.length} bytes; ${method} needs at least ${bytesMin} (RFC 7518)`);
  const key = createSecretKey(secret);
  return { publicKey: key, privateKey: key };
}

function privateKeyOf(path: string): KeyObject {
  const bytes = readKeyFile('priv-key', path);
  try {
    return createPrivateKey(bytes);
  } catch (error) {
    return optionError('priv-key', `"${path}" holds no unencrypted PEM private key (${(error as Error).message})`);
  }
}

/** A PEM public key or certificate (etcd's own tests give a certificate); never a private key. */
function publicKeyOf(path: string): KeyObject {
  const bytes = readKeyFile('pub-key', path);
  let holdsPrivate = false;
  try {
    createPrivateKey(bytes);
    holdsPrivate = true;
  } catch {
    // Expected: a public key file is not a private key.
  }
  // createPublicKey would quietly derive a public key from a private one; a private key in the
  // pub-key file means the two files were swapped or the private key was copied where it should not be.
  if (holdsPrivate) optionError('pub-key', `"${path}" holds a private key; give the public key or certificate`);
  try {
    return createPublicKey(bytes);
  } catch (error) {
    return optionError('pub-key', `"${path}" holds no PEM public key or certificate (${(error as Error).message})`);
  }
}

function checkKeyFits(method: JwtSignMethod, spec: MethodSpec, option: 'pub-key' | 'priv-key', key: KeyObject): void {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  switch (spec.family) {
    case 'rsa':
    case 'rsa-pss':
      if (type !== 'rsa') optionError(option, `${method} needs an RSA key, got ${type ?? 'none'}`);
      if ((details?.modulusLength ?? 0) < rsaModulusBitsMin) {
        optionError(option, `${method} needs an RSA key of at least ${rsaModulusBitsMin} bits, got ${details?.modulusLength ?? 0}`);
      }
      return;
    case 'ecdsa':
      if (type !== 'ec' || details?.namedCurve !== spec.curve) {
        optionError(option, `${method} needs an EC key on curve ${spec.curve}, got ${type ?? 'none'}${details?.namedCurve === undefined ? '' : ` on ${details.namedCurve}`}`);
      }
      return;
    case 'eddsa':
      if (type !== 'ed25519') optionError(option, `${method} needs an Ed25519 key, got ${type ?? 'none'}`);
      return;
    case 'hmac':
      throw new TypeError('HMAC secrets are not asymmetric keys');
  }
}

function sameKey(a: KeyObject, b: KeyObject): boolean {
  return a.export({ type: 'spki', format: 'der' }).equals(b.export({ type: 'spki', format: 'der' }));
}

// ---------------------------------------------------------------------------------------------
// Tokens

/** etcd's ErrVerifyOnly: this member has pub-key only and cannot sign. */
export class JwtVerifyOnlyError extends Error {
  override readonly name = 'JwtVerifyOnlyError';
  readonly code = 'JWT_VERIFY_ONLY';
  constructor() {
    super('auth: token signing attempted with verify-only key');
  }
}

/** Why a token was refused (for a debug log line; the client is told only that it is invalid). */
export type JwtRejection =
  | 'too-long'
  | 'malformed'
  | 'header'
  | 'alg'
  | 'signature'
  | 'claims'
  | 'expired'
  | 'not-yet-valid';

export type JwtCheck =
  | { readonly ok: true; readonly user: string; readonly authRevision: number }
  | { readonly ok: false; readonly reason: JwtRejection };

const base64UrlPattern = /^[A-Za-z0-9_-]*$/;

/** Canonical base64url only: a part that re-encodes differently is refused, not normalised. */
function decodePart(part: string): Buffer | undefined {
  if (!base64UrlPattern.test(part)) return undefined;
  const bytes = Buffer.from(part, 'base64url');
  return bytes.toString('base64url') === part ? bytes : undefined;
}

function parseObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A JSON string as Go's encoding/json writes it (HTML-safe), so our tokens match etcd's bytes. */
function goJsonString(text: string): string {
  return JSON.stringify(text).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** etcd's JWT token provider: signs tokens for a user at an auth revision, verifies them. */
export class JwtTokens {
  readonly signMethod: JwtSignMethod;
  readonly ttlMs: number;
  private readonly spec: MethodSpec;
  private readonly publicKey: KeyObject;
  private readonly privateKey: KeyObject | undefined;
  private readonly encodedHeader: string;

  constructor(option: JwtTokenOption) {
    if (!Number.isSafeInteger(option.ttlMs) || option.ttlMs < jwtTtlMsMin || option.ttlMs > jwtTtlMsMax) {
      throw new TypeError(`JWT ttlMs must be an integer in ${jwtTtlMsMin}..${jwtTtlMsMax}, got ${option.ttlMs}`);
    }
    this.signMethod = option.signMethod;
    this.ttlMs = option.ttlMs;
    this.spec = specOf(option.signMethod);
    this.publicKey = option.publicKey;
    this.privateKey = option.privateKey;
    // The bytes golang-jwt writes: a Go map marshalled with sorted keys.
    this.encodedHeader = Buffer.from(`{"alg":"${option.signMethod}","typ":"JWT"}`).toString('base64url');
  }

  /** False on a verify-only member (pub-key without priv-key): sign() throws there. */
  get canSign(): boolean {
    return this.privateKey !== undefined;
  }

  /** A token for `user` at `authRevision`, expiring ttlMs after `nowMs` (whole seconds, as etcd). */
  sign(user: string, authRevision: number, nowMs: number): string {
    if (this.privateKey === undefined) throw new JwtVerifyOnlyError();
    if (typeof user !== 'string' || user === '') throw new TypeError('a JWT is for a named user');
    if (!Number.isSafeInteger(authRevision) || authRevision < 0) throw new TypeError(`auth revision must be a non-negative integer, got ${authRevision}`);
    if (!Number.isFinite(nowMs)) throw new TypeError(`nowMs must be a time, got ${nowMs}`);
    const exp = Math.floor((nowMs + this.ttlMs) / 1000);
    const claims = `{"exp":${exp},"revision":${authRevision},"username":${goJsonString(user)}}`;
    const signingInput = `${this.encodedHeader}.${Buffer.from(claims).toString('base64url')}`;
    const signature = this.signatureOf(Buffer.from(signingInput), this.privateKey);
    const token = `${signingInput}.${signature.toString('base64url')}`;
    // A token verify() would refuse must not be handed out: user names are far shorter than this.
    if (token.length > tokenLengthMax) throw new RangeError(`a token for a ${user.length}-character user name is over ${tokenLengthMax} characters`);
    return token;
  }

  /** The user and auth revision of a valid, unexpired token; undefined for any other string. */
  verify(token: string, nowMs: number): { user: string; authRevision: number } | undefined {
    const check = this.check(token, nowMs);
    return check.ok ? { user: check.user, authRevision: check.authRevision } : undefined;
  }

  /** verify(), saying why a token is refused. */
  check(token: string, nowMs: number): JwtCheck {
    if (typeof token !== 'string') return { ok: false, reason: 'malformed' };
    if (token.length > tokenLengthMax) return { ok: false, reason: 'too-long' };
    const parts = token.split('.');
    if (parts.length !== 3) return { ok: false, reason: 'malformed' };
    const [headerPart = '', claimsPart = '', signaturePart = ''] = parts;
    const headerBytes = decodePart(headerPart);
    const claimsBytes = decodePart(claimsPart);
    const signature = decodePart(signaturePart);
    if (headerBytes === undefined || claimsBytes === undefined || signature === undefined) return { ok: false, reason: 'malformed' };
    const header = parseObject(headerBytes);
    if (header === undefined) return { ok: false, reason: 'header' };
    // The method is this member's, never the token's choice: that shuts out `none` and an HS256
    // token keyed with our RSA public key (RFC 8725 2.1).
    if (header['alg'] !== this.signMethod) return { ok: false, reason: 'alg' };
    // RFC 7515 4.1.11: extensions we do not understand must not be ignored.
    if (header['crit'] !== undefined) return { ok: false, reason: 'header' };
    if (!this.signatureHolds(Buffer.from(`${headerPart}.${claimsPart}`), signature)) return { ok: false, reason: 'signature' };
    return claimsCheck(claimsBytes, nowMs);
  }

  private signatureOf(data: Buffer, key: KeyObject): Buffer {
    const { family, hash } = this.spec;
    switch (family) {
      case 'rsa':
        return signBytes(hash ?? null, data, key);
      case 'rsa-pss':
        // golang-jwt signs PS* with a salt as long as the hash.
        return signBytes(hash ?? null, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
      case 'ecdsa':
        // JOSE's r||s (RFC 7518 3.4), not the DER that node:crypto writes by default.
        return signBytes(hash ?? null, data, { key, dsaEncoding: 'ieee-p1363' });
      case 'eddsa':
        return signBytes(null, data, key);
      case 'hmac':
        return createHmac(hash ?? 'sha256', key).update(data).digest();
    }
  }

  private signatureHolds(data: Buffer, signature: Buffer): boolean {
    const { family, hash, signatureBytes } = this.spec;
    const key = this.publicKey;
    switch (family) {
      case 'rsa':
        return verifyBytes(hash ?? null, data, key, signature);
      case 'rsa-pss':
        // As golang-jwt: any salt length verifies (it signs with the hash's length).
        return verifyBytes(hash ?? null, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature);
      case 'ecdsa':
        return signature.length === signatureBytes && verifyBytes(hash ?? null, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
      case 'eddsa':
        return verifyBytes(null, data, key, signature);
      case 'hmac': {
        const expected = createHmac(hash ?? 'sha256', key).update(data).digest();
        return signature.length === expected.length && timingSafeEqual(signature, expected);
      }
    }
  }
}

/** The claims etcd writes, with their types; `exp` (and `nbf` if given) against the clock. */
function claimsCheck(bytes: Buffer, nowMs: number): JwtCheck {
  const claims = parseObject(bytes);
  if (claims === undefined) return { ok: false, reason: 'claims' };
  const { username, revision, exp, nbf } = claims;
  if (typeof username !== 'string' || username === '') return { ok: false, reason: 'claims' };
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) return { ok: false, reason: 'claims' };
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return { ok: false, reason: 'claims' };
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf))) return { ok: false, reason: 'claims' };
  // As golang-jwt: valid strictly before exp.
  if (nowMs >= exp * 1000) return { ok: false, reason: 'expired' };
  if (typeof nbf === 'number' && nowMs < nbf * 1000) return { ok: false, reason: 'not-yet-valid' };
  return { ok: true, user: username, authRevision: revision };
}
