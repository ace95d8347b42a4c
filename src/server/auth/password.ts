/**
 * Password hashes: scrypt (node:crypto) with a random salt per password, run on libuv's thread
 * pool so a login never blocks the event loop. What is stored (and replicated) is the encoded
 * hash `scrypt$<log2 N>$<r>$<p>$<salt base64>$<key base64>`, never the password.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import {
  scryptBlockSize,
  scryptBlockSizeMax,
  scryptCostLog2Default,
  scryptCostLog2Max,
  scryptCostLog2Min,
  scryptKeyBytes,
  scryptKeyBytesMax,
  scryptParallelism,
  scryptParallelismMax,
  scryptSaltBytes,
} from './limits.js';

const PREFIX = 'scrypt';

function derive(password: string, salt: Buffer, costLog2: number, r: number, p: number, keyBytes: number): Promise<Buffer> {
  const N = 2 ** costLog2;
  // scrypt needs 128 * N * r bytes; node's default cap (32 MiB) is exactly 2^15 * 8 * 128.
  const maxmem = 256 * N * r + 1024 * 1024;
  return new Promise((resolve, reject) => scrypt(password, salt, keyBytes, { N, r, p, maxmem }, (error, key) => (error === null ? resolve(key) : reject(error))));
}

/** A new salted hash of `password` at scrypt cost 2^`costLog2`. */
export async function hashPassword(password: string, costLog2: number = scryptCostLog2Default): Promise<Uint8Array> {
  if (!Number.isInteger(costLog2) || costLog2 < scryptCostLog2Min || costLog2 > scryptCostLog2Max) throw new RangeError(`scrypt cost 2^${costLog2} is outside 2^${scryptCostLog2Min}..2^${scryptCostLog2Max}`);
  const salt = randomBytes(scryptSaltBytes);
  const key = await derive(password, salt, costLog2, scryptBlockSize, scryptParallelism, scryptKeyBytes);
  return new Uint8Array(Buffer.from(`${PREFIX}$${costLog2}$${scryptBlockSize}$${scryptParallelism}$${salt.toString('base64')}$${key.toString('base64')}`));
}

interface ParsedHash {
  readonly costLog2: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

function parseHash(stored: Uint8Array): ParsedHash | undefined {
  const parts = Buffer.from(stored).toString('utf8').split('$');
  if (parts.length !== 6 || parts[0] !== PREFIX) return undefined;
  const [costLog2, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (!Number.isInteger(costLog2) || costLog2 < scryptCostLog2Min || costLog2 > scryptCostLog2Max) return undefined;
  if (!Number.isInteger(r) || r < 1 || r > scryptBlockSizeMax || !Number.isInteger(p) || p < 1 || p > scryptParallelismMax) return undefined;
  const salt = Buffer.from(parts[4]!, 'base64');
  const key = Buffer.from(parts[5]!, 'base64');
  if (salt.length === 0 || key.length === 0 || key.length > scryptKeyBytesMax) return undefined;
  return { costLog2, r, p, salt, key };
}

/** Whether `stored` is a hash this build can check (what UserAdd with a hashed password must give). */
export function isPasswordHash(stored: Uint8Array): boolean {
  return parseHash(stored) !== undefined;
}

/** Whether `password` matches `stored` (false for a hash this build cannot read). */
export async function verifyPassword(password: string, stored: Uint8Array): Promise<boolean> {
  const parsed = parseHash(stored);
  if (parsed === undefined) return false;
  const key = await derive(password, parsed.salt, parsed.costLog2, parsed.r, parsed.p, parsed.key.length);
  return timingSafeEqual(key, parsed.key);
}

/**
 * Spends the time a real check would (for an unknown user or one with no password), so the
 * answer's timing does not tell which user names exist.
 */
export async function spendPasswordCheck(password: string, costLog2: number = scryptCostLog2Default): Promise<void> {
  await derive(password, Buffer.alloc(scryptSaltBytes), costLog2, scryptBlockSize, scryptParallelism, scryptKeyBytes);
}
