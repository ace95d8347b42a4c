/**
 * The lease engine's limits (units last). etcd's where etcd has one.
 */
import { assert } from '../../../raft/index.js';

/** etcd's MaxLeaseTTL: a grant above it is refused with `etcdserver: too large lease TTL`. */
export const leaseTtlSecondsMax = 9_000_000_000;

/** Leases one Expire command revokes (a leader proposes more on later ticks). */
export const leaseExpiriesPerCommandMax = 64;

/** Expire commands a leader proposes per tick, so a mass expiry cannot flood the log in one turn. */
export const leaseExpireCommandsPerTickMax = 4;

/** Lease ids one Renew command carries (a keep-alive stream's renewals of one turn travel together). */
export const leaseRenewalsPerCommandMax = 1024;

/** The expiry wheel's resolution: a lease expires at most this late beyond its deadline and a tick. */
export const leaseWheelResolutionMs = 10;

/** Keys a TimeToLive answer lists at most (etcd lists all; past this the answer would outgrow a message). */
export const leaseKeysListedMax = 100_000;

assert(Number.isSafeInteger(leaseTtlSecondsMax * 1000), 'the largest TTL in ms must stay an exact number');
assert(leaseExpiriesPerCommandMax >= 1 && leaseExpireCommandsPerTickMax >= 1, 'a leader must be able to expire something per tick');
