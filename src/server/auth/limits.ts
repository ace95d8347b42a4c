/**
 * The auth layer's limits (TigerBeetle style: every bound named, units last), with the
 * relations between them asserted at load.
 */
import { strict as assert } from 'node:assert';
import { tokenPrefixLettersMax } from '../../engines/index.js';

/** How often expired simple tokens are swept from the table (they are refused once expired anyway). */
export const simpleTokenSweepMs = 10_000;
/** Letters in the random part of a simple token (etcd's GenTokenPrefix uses 16). */
export const simpleTokenPrefixLetters = 16;
/** The longest token a request may present (metadata value), before any lookup or parsing. */
export const tokenBytesMax = 4096;

/** The longest user or role name (bytes of UTF-8): names travel in every command's envelope. */
export const authNameBytesMax = 1024;
/** The longest password accepted (bytes): hashing cost grows with it, and etcd's bcrypt stops at 72. */
export const passwordBytesMax = 1024;

/** scrypt's cost as log2 N (N = 2^14: 16 MiB and tens of ms per hash, off the event loop; etcd's bcrypt cost 10 is of that order). */
export const scryptCostLog2Default = 14;
/** The accepted range of that cost (--bcrypt-cost maps into it: src/server/config.ts scryptLog2NOf). */
export const scryptCostLog2Min = 10;
export const scryptCostLog2Max = 16;
/** scrypt's block size and parallelism (the usual interactive-login parameters). */
export const scryptBlockSize = 8;
export const scryptParallelism = 1;
/** The largest block size, parallelism and key a stored hash may name (a hash given by UserAdd's hashed_password is checked against them). */
export const scryptBlockSizeMax = 16;
export const scryptParallelismMax = 4;
export const scryptKeyBytesMax = 64;
/** Simple tokens one member holds at most: past it Authenticate is refused until some expire. */
export const simpleTokensMax = 100_000;
/** Bytes of random salt and of derived key per password. */
export const scryptSaltBytes = 16;
export const scryptKeyBytes = 32;

/** Authenticate calls each user may make: a burst, refilled at a rate (per second). */
export const authenticateBurstPerUser = 10;
export const authenticateRatePerUserPerSecond = 5;
/** Authenticate calls each client address may make, over every user. */
export const authenticateBurstPerPeer = 50;
export const authenticateRatePerPeerPerSecond = 25;
/** Buckets kept per limiter (the fullest are forgotten first: a full bucket is the same as none). */
export const rateBucketsMax = 10_000;
/** An Authenticate whose auth revision moved while its password was checked is tried this often (etcd retries until it holds). */
export const authenticateAttemptsMax = 5;

assert(simpleTokenSweepMs > 0, 'a sweep period');
assert(simpleTokenPrefixLetters >= 1 && simpleTokenPrefixLetters <= tokenPrefixLettersMax, 'the auth engine accepts the prefixes this server makes');
assert(scryptCostLog2Min <= scryptCostLog2Default && scryptCostLog2Default <= scryptCostLog2Max, 'the default scrypt cost is in range');
assert(authenticateBurstPerUser <= authenticateBurstPerPeer, 'one address may use every user\'s burst');
