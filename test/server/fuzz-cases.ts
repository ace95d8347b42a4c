/**
 * Hostile requests that decode, for the fuzz suites (issue #17 §2): fast-check arbitraries of
 * requests to every method of the services the server registers, each saying whether etcd refuses
 * it (`mustRefuse`, decided from the request alone on a settled state: no leases, the seed keys)
 * and whether it is a read (`readOnly`). Sizes assume etcd's default --max-request-bytes.
 */
import fc from 'fast-check';
import { counterLimits } from '../../src/engines/counter/index.js';
import { leaseLimits } from '../../src/engines/lease/index.js';
import { ttlLimits } from '../../src/engines/ttl/index.js';
import { lockNameBytesMax } from '../../src/server/limits.js';
import { mvccLimits } from '../../storage/index.js';
import { everyMethod, type FuzzedMethod, seedKeys } from './fuzz-harness.js';

/** etcd's default --max-request-bytes, which the nodes run with. */
export const maxRequestBytes = 1_572_864;

const methods = new Map(everyMethod().map((m) => [m.path, m]));

export function methodOf(path: string): FuzzedMethod {
  const method = methods.get(path);
  if (method === undefined) throw new Error(`no method ${path}`);
  return method;
}

/** One hostile request: which method, the message (protobufjs `fromObject` form), what must happen. */
export interface Case {
  readonly path: string;
  /** One message, or a stream's frames. */
  readonly messages: readonly object[];
  /** etcd refuses it (or DKV documents a refusal): an answer that is not a refusal fails. */
  readonly mustRefuse?: boolean;
  /** A read: the state must not change whatever the answer. */
  readonly readOnly?: boolean;
}

export function encode(method: FuzzedMethod, message: object): Buffer {
  return Buffer.from(method.requestType.encode(method.requestType.fromObject(message)).finish());
}

// ---- Values ------------------------------------------------------------------------------------

const int64Edges = ['-9223372036854775808', '9223372036854775807', '-9007199254740993', '9007199254740993', '-1', '0', '1'];
/** Any int64, biased to the edges, as protobufjs takes it exactly (a decimal string). */
const int64 = fc.oneof(fc.constantFrom(...int64Edges), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String), fc.integer({ min: -1000, max: 1000 }).map(String));
const uint64 = fc.oneof(fc.constantFrom('0', '1', '18446744073709551615', '9007199254740993'), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String));
const smallInt = fc.integer({ min: -3, max: 9 });

/** Keys: the seed keys, absent ones, empty, \0, \xff…, and keys at and past the limits (rarely: they are big). */
const keyBytesOverLimit = Buffer.alloc(mvccLimits.keyBytesMax + 1, 0x6b);
const normalKey = fc.oneof(
  fc.constantFrom(...seedKeys, 'fuzz/absent', 'fuzz/c', 'fuzz/c/2').map((k) => Buffer.from(k)),
  fc.constantFrom(Buffer.from([0]), Buffer.from([0xff, 0xff]), Buffer.from('fuzz/\u00e9')),
  fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => Buffer.concat([Buffer.from('fuzz/'), b])),
);
const emptyKey = fc.constant(Buffer.alloc(0));
const key = fc.oneof({ weight: 8, arbitrary: normalKey }, { weight: 2, arbitrary: emptyKey }, { weight: 1, arbitrary: fc.constant(keyBytesOverLimit) });
/** range_end: absent, \0 (from key), before, at or after the key. */
const rangeEnd = fc.oneof(fc.constant(undefined), fc.constant(Buffer.from([0])), normalKey, fc.constant(Buffer.from('a')), fc.constant(Buffer.from('fuzz/')));
/** Values: small, or one past the request limit on its own (a value past the store's 16 MiB is past gRPC's limit too). */
const value = fc.oneof({ weight: 8, arbitrary: fc.uint8Array({ maxLength: 16 }).map(Buffer.from) }, { weight: 1, arbitrary: fc.constant(Buffer.alloc(maxRequestBytes + 1, 0x76)) });

/** A value that makes a put of `key` exactly `size` bytes on the wire. */
function valueForRequestOf(method: FuzzedMethod, putKey: Buffer, size: number): Buffer {
  let length = size - putKey.length - 16;
  while (encode(method, { key: putKey, value: Buffer.alloc(length + 1) }).length <= size) length++;
  return Buffer.alloc(length, 0x76);
}

// ---- KV -----------------------------------------------------------------------------------------

const isEmpty = (b: Buffer | undefined): boolean => b === undefined || b.length === 0;
const overLimit = (b: Buffer | undefined): boolean => b !== undefined && b.length > maxRequestBytes;

const rangeCase: fc.Arbitrary<Case> = fc
  .record({ key, range_end: rangeEnd, limit: int64, revision: fc.oneof(int64, fc.constantFrom('0', '2', '3')), sort_order: smallInt, sort_target: smallInt, serializable: fc.boolean(), keys_only: fc.boolean(), count_only: fc.boolean(), min_mod_revision: int64, max_mod_revision: int64, min_create_revision: int64, max_create_revision: int64 })
  .map((r) => ({ path: '/etcdserverpb.KV/Range', messages: [r], readOnly: true, mustRefuse: isEmpty(r.key) || overLimit(r.key) || BigInt(r.revision) > 10n ** 12n }));

const putFields = { key, value, lease: fc.oneof(fc.constant('0'), int64), prev_kv: fc.boolean(), ignore_value: fc.boolean(), ignore_lease: fc.boolean() };
/** etcd refuses these puts (no lease exists after a settle, so a nonzero lease is unknown). */
const putRefused = (p: { key: Buffer; value: Buffer; lease: string; ignore_value: boolean; ignore_lease: boolean }): boolean =>
  isEmpty(p.key) || overLimit(p.key) || p.value.length > maxRequestBytes || (p.ignore_value && p.value.length > 0) || p.lease !== '0';

const putCase: fc.Arbitrary<Case> = fc.record(putFields).map((p) => ({ path: '/etcdserverpb.KV/Put', messages: [p], mustRefuse: putRefused(p) }));

const putAtLimitCase: fc.Arbitrary<Case> = fc.constantFrom(0, 1).map((over) => {
  const putKey = Buffer.from('fuzz/big');
  const method = methodOf('/etcdserverpb.KV/Put');
  return { path: method.path, messages: [{ key: putKey, value: valueForRequestOf(method, putKey, maxRequestBytes + over) }], mustRefuse: over === 1 };
});

/** A range_end (other than \0, "from key") at or before the key: the range holds no key. */
const emptyRange = (k: Buffer, end: Buffer | undefined): boolean => end !== undefined && !(end.length === 1 && end[0] === 0) && Buffer.compare(k, end) >= 0;

const deleteCase: fc.Arbitrary<Case> = fc
  .record({ key, range_end: rangeEnd, prev_kv: fc.boolean() })
  // Deleting an empty range deletes nothing and takes no revision (etcd 3.4, measured).
  .map((d) => ({ path: '/etcdserverpb.KV/DeleteRange', messages: [d], mustRefuse: isEmpty(d.key) || overLimit(d.key), readOnly: emptyRange(d.key, d.range_end) }));

const compactCase: fc.Arbitrary<Case> = fc
  .record({ revision: fc.oneof(int64, fc.constantFrom('0', '1', '2', '1000000')), physical: fc.boolean() })
  // Negative, 0 (etcd: compacted) and future revisions are refused.
  .map((c) => ({ path: '/etcdserverpb.KV/Compact', messages: [c], mustRefuse: BigInt(c.revision) <= 0n || BigInt(c.revision) >= 1_000_000n }));

/** A txn holds many keys and values: one past the limit in one of them is rarer (it would refuse nearly every txn). */
const opKey = fc.oneof({ weight: 40, arbitrary: fc.oneof({ weight: 8, arbitrary: normalKey }, { weight: 1, arbitrary: emptyKey }) }, { weight: 1, arbitrary: fc.constant(keyBytesOverLimit) });
const opValue = fc.oneof({ weight: 30, arbitrary: fc.uint8Array({ maxLength: 16 }).map(Buffer.from) }, { weight: 1, arbitrary: fc.constant(Buffer.alloc(maxRequestBytes + 1, 0x76)) });

const compare = fc.record({
  key: opKey,
  range_end: rangeEnd,
  target: smallInt,
  result: smallInt,
  version: int64,
  create_revision: int64,
  mod_revision: int64,
  value: opValue,
  lease: int64,
});

/** Ops of a txn, nested up to `depth` more levels. */
function ops(depth: number): fc.Arbitrary<object[]> {
  const op: Array<fc.Arbitrary<object>> = [
    fc.record({ key: opKey, range_end: rangeEnd, revision: int64, limit: int64 }).map((r) => ({ request_range: r })),
    fc.record({ key: opKey, value: opValue, lease: fc.constant('0') }).map((p) => ({ request_put: p })),
    fc.record({ key: opKey, range_end: rangeEnd }).map((d) => ({ request_delete_range: d })),
  ];
  if (depth > 0) op.push(txn(depth - 1).map((t) => ({ request_txn: t })));
  return fc.array(fc.oneof(...op), { maxLength: 4 });
}

function txn(depth: number): fc.Arbitrary<object> {
  return fc.record({ compare: fc.array(compare, { maxLength: 3 }), success: ops(depth), failure: ops(depth) });
}

const txnCase: fc.Arbitrary<Case> = txn(3).map((t) => ({ path: '/etcdserverpb.KV/Txn', messages: [t] }));

/** 128 or 129 operations in one list; one-op levels nested 129 (etcd's limit) or 130 deep. */
const txnLimitCase: fc.Arbitrary<Case> = fc.record({ extra: fc.constantFrom(0, 1), list: fc.constantFrom('compare', 'success', 'failure', 'nested') }).map(({ extra, list }) => {
  if (list === 'nested') {
    let t: object = {};
    for (let level = 1; level < mvccLimits.txnDepthMax + extra; level++) t = { success: [{ request_txn: t }] };
    return { path: '/etcdserverpb.KV/Txn', messages: [t], mustRefuse: extra === 1 };
  }
  const n = mvccLimits.txnOperationsMax + extra;
  const entries = Array.from({ length: n }, (_, i) =>
    list === 'compare' ? { key: Buffer.from(`fuzz/ops/${i}`), target: 0, result: 0, version: 0 } : { request_put: { key: Buffer.from(`fuzz/ops/${i}`), value: Buffer.from('v') } },
  );
  return { path: '/etcdserverpb.KV/Txn', messages: [{ [list]: entries }], mustRefuse: extra === 1 };
});

// ---- Watch and leases -----------------------------------------------------------------------

const watchFrame = fc.oneof(
  fc.record({ key, range_end: rangeEnd, start_revision: int64, progress_notify: fc.boolean(), filters: fc.array(smallInt, { maxLength: 3 }), prev_kv: fc.boolean(), watch_id: fc.oneof(fc.constant('0'), int64), fragment: fc.boolean() }).map((c) => ({ create_request: c })),
  int64.map((id) => ({ cancel_request: { watch_id: id } })),
  fc.constant({ progress_request: {} }),
  fc.constant({}),
);
const watchCase: fc.Arbitrary<Case> = fc.array(watchFrame, { minLength: 1, maxLength: 6 }).map((frames) => ({ path: '/etcdserverpb.Watch/Watch', messages: frames, readOnly: true }));

const keepAliveCase: fc.Arbitrary<Case> = fc.array(int64, { minLength: 1, maxLength: 5 }).map((ids) => ({ path: '/etcdserverpb.Lease/LeaseKeepAlive', messages: ids.map((ID) => ({ ID })), readOnly: true }));

const ttl = fc.oneof(int64, fc.constantFrom(String(leaseLimits.leaseTtlSecondsMax), String(leaseLimits.leaseTtlSecondsMax + 1)));
const leaseCase: fc.Arbitrary<Case> = fc.oneof(
  fc.record({ TTL: ttl, ID: int64 }).map((g) => ({ path: '/etcdserverpb.Lease/LeaseGrant', messages: [g], mustRefuse: BigInt(g.TTL) > BigInt(leaseLimits.leaseTtlSecondsMax) })),
  // No lease exists after a settle: every revoke is of an unknown lease.
  int64.map((ID) => ({ path: '/etcdserverpb.Lease/LeaseRevoke', messages: [{ ID }], mustRefuse: true })),
  fc.record({ ID: int64, keys: fc.boolean() }).map((t) => ({ path: '/etcdserverpb.Lease/LeaseTimeToLive', messages: [t], readOnly: true })),
  fc.constant({ path: '/etcdserverpb.Lease/LeaseLeases', messages: [{}], readOnly: true }),
);

// ---- Cluster and maintenance ------------------------------------------------------------------

/** Peer URLs that are no peer URL (never a valid one: adding a member would cost the quorum). */
function mayBePeerUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
const badUrl = fc
  .oneof(fc.constantFrom('', 'http://a', 'http://a:1/path', 'ftp://a:1', 'unix://a:1', 'a:1', '://', 'http://[::1', 'http://a:99999', 'http://a:-1'), fc.string({ maxLength: 12 }))
  // Whatever WHATWG parses as an http(s) URL (`http:a:1`, ` http://a:1`) is left out, whether or not it has a port.
  .filter((text) => !mayBePeerUrl(text));
/** The cluster the cases are for: its member ids and peer URLs (uint64 ids as decimal strings). */
export interface ClusterFacts {
  readonly memberIds: readonly string[];
  readonly peerUrls: readonly string[];
}

function clusterCase(facts: ClusterFacts): fc.Arbitrary<Case> {
  const notMember = uint64.filter((id) => !facts.memberIds.includes(id));
  const member = fc.constantFrom(...facts.memberIds);
  return fc.oneof(
  fc.record({ peerURLs: fc.array(badUrl, { maxLength: 3 }), isLearner: fc.boolean() }).map((m) => ({ path: '/etcdserverpb.Cluster/MemberAdd', messages: [m], mustRefuse: true })),
  fc.tuple(fc.constantFrom(...facts.peerUrls), fc.boolean()).map(([url, isLearner]) => ({ path: '/etcdserverpb.Cluster/MemberAdd', messages: [{ peerURLs: [url], isLearner }], mustRefuse: true })),
  notMember.map((ID) => ({ path: '/etcdserverpb.Cluster/MemberRemove', messages: [{ ID }], mustRefuse: true })),
  fc.record({ ID: fc.oneof(notMember, member), peerURLs: fc.array(badUrl, { maxLength: 2 }) }).map((m) => ({ path: '/etcdserverpb.Cluster/MemberUpdate', messages: [m], mustRefuse: true })),
  // Every member is a voter: promoting one, or any id that names no member, is refused.
  fc.oneof(notMember, member).map((ID) => ({ path: '/etcdserverpb.Cluster/MemberPromote', messages: [{ ID }], mustRefuse: true })),
  fc.constant({ path: '/etcdserverpb.Cluster/MemberList', messages: [{}], readOnly: true }),
  );
}

function maintenanceCase(facts: ClusterFacts): fc.Arbitrary<Case> {
  const notMember = uint64.filter((id) => !facts.memberIds.includes(id));
  return fc.oneof(
  int64.map((revision) => ({ path: '/etcdserverpb.Maintenance/HashKV', messages: [{ revision }], readOnly: true, mustRefuse: BigInt(revision) > 10n ** 12n })),
  fc.record({ action: smallInt, memberID: uint64, alarm: smallInt }).map((a) => ({ path: '/etcdserverpb.Maintenance/Alarm', messages: [a], readOnly: a.action === 0 })),
  // No member has that id: there is no such transfer target.
  notMember.map((targetID) => ({ path: '/etcdserverpb.Maintenance/MoveLeader', messages: [{ targetID }], mustRefuse: true })),
  fc.constantFrom('Status', 'Hash').map((name) => ({ path: `/etcdserverpb.Maintenance/${name}`, messages: [{}], readOnly: true })),
  );
}

// ---- Lock and election ------------------------------------------------------------------------

const name = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('fuzz-lock', 'fuzz/a', '\u0000', '\u00ff').map((n) => Buffer.from(n, 'latin1')) },
  { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
  { weight: 1, arbitrary: fc.constantFrom(lockNameBytesMax, lockNameBytesMax + 1).map((n) => Buffer.alloc(n, 0x6e)) },
);
const nameRefused = (n: Buffer): boolean => n.length === 0 || n.length > lockNameBytesMax;
const leaderKey = fc.record({ name, key, rev: int64, lease: int64 });

const concurrencyCase: fc.Arbitrary<Case> = fc.oneof(
  // Nonzero leases are unknown after a settle; lease 0 gets a session lease and the free lock.
  fc.record({ name, lease: fc.oneof(fc.constant('0'), int64) }).map((l) => ({ path: '/v3lockpb.Lock/Lock', messages: [l], mustRefuse: nameRefused(l.name) || l.lease !== '0' })),
  key.map((k) => ({ path: '/v3lockpb.Lock/Unlock', messages: [{ key: k }], mustRefuse: isEmpty(k) || overLimit(k) })),
  fc.record({ name, lease: fc.oneof(fc.constant('0'), int64), value }).map((c) => ({ path: '/v3electionpb.Election/Campaign', messages: [c], mustRefuse: nameRefused(c.name) || c.lease !== '0' || c.value.length > maxRequestBytes })),
  // A leader key that names an existing key at its create revision is a leader's: accepted.
  fc.record({ leader: fc.option(leaderKey, { nil: undefined }), value }).map((p) => ({ path: '/v3electionpb.Election/Proclaim', messages: [p], mustRefuse: p.leader === undefined || isEmpty(p.leader.key) || overLimit(p.leader.key) || p.value.length > maxRequestBytes })),
  name.map((n) => ({ path: '/v3electionpb.Election/Leader', messages: [{ name: n }], readOnly: true, mustRefuse: true })),
  name.map((n) => ({ path: '/v3electionpb.Election/Observe', messages: [{ name: n }], readOnly: true })),
  fc.option(leaderKey, { nil: undefined }).map((leader) => ({ path: '/v3electionpb.Election/Resign', messages: [{ leader }], mustRefuse: leader === undefined || isEmpty(leader.key) || overLimit(leader.key) })),
);

// ---- dkv.v1 ---------------------------------------------------------------------------------------

/** TTLs (ms) that never expire during a run, or that are refused. */
const ttlEdges = [ttlLimits.keyTtlMsMax, ttlLimits.keyTtlMsMax + 1, counterLimits.counterTtlMsMax, counterLimits.counterTtlMsMax + 1].map(String);
const ttlMs = fc.oneof(fc.constantFrom('0', '-1', '3600000', '9223372036854775807', '-9223372036854775808', ...ttlEdges), int64.filter((t) => BigInt(t) < 0n || BigInt(t) > 3_600_000n));
/** dkv.v1.KV's key TTLs: at most 10 years; a counter's: etcd's lease TTL limit, in ms. */
const ttlRefused = (t: string): boolean => BigInt(t) < 0n || BigInt(t) > BigInt(ttlLimits.keyTtlMsMax);
const counterTtlRefused = (t: string): boolean => BigInt(t) < 0n || BigInt(t) > BigInt(counterLimits.counterTtlMsMax);
const fence = fc.option(fc.record({ key, token: int64 }), { nil: undefined });
const fenceRefused = (f: { key: Buffer; token: string } | undefined): boolean => f !== undefined && (isEmpty(f.key) || overLimit(f.key) || BigInt(f.token) <= 0n);

const dkvCase: fc.Arbitrary<Case> = fc.oneof(
  fc.record({ ...putFields, ttl_ms: ttlMs, fence }).map((p) => ({ path: '/dkv.v1.KV/Put', messages: [p], mustRefuse: putRefused(p) || ttlRefused(p.ttl_ms) || fenceRefused(p.fence) })),
  fc.record({ txn: txn(2), ttls: fc.array(fc.record({ key, ttl_ms: ttlMs }), { maxLength: 3 }), fence }).map((t) => ({ path: '/dkv.v1.KV/Txn', messages: [t], mustRefuse: fenceRefused(t.fence) || t.ttls.some((e) => isEmpty(e.key) || ttlRefused(e.ttl_ms)) })),
  fc.record({ key, delta: int64, ttl_ms: ttlMs, down: fc.boolean() }).map(({ down, ...r }) => ({ path: `/dkv.v1.Counter/${down ? 'Decrement' : 'Increment'}`, messages: [r], mustRefuse: isEmpty(r.key) || overLimit(r.key) || r.delta === '0' || counterTtlRefused(r.ttl_ms) })),
  fc.record({ key, value: int64, ttl_ms: ttlMs }).map((r) => ({ path: '/dkv.v1.Counter/Set', messages: [r], mustRefuse: isEmpty(r.key) || overLimit(r.key) || counterTtlRefused(r.ttl_ms) })),
  fc.record({ key, serializable: fc.boolean() }).map((r) => ({ path: '/dkv.v1.Counter/Get', messages: [r], readOnly: true, mustRefuse: isEmpty(r.key) || overLimit(r.key) })),
  key.map((k) => ({ path: '/dkv.v1.Counter/Delete', messages: [{ key: k }], mustRefuse: isEmpty(k) || overLimit(k) })),
  fc.record({ prefix: fc.oneof(normalKey, emptyKey), snapshot: fc.boolean(), prev_kv: fc.boolean(), start_revision: int64 }).map((w) => ({ path: '/dkv.v1.Watch/WatchPrefix', messages: [w], readOnly: true })),
);

// ---- Groups ---------------------------------------------------------------------------------------

/** The groups of `hostileCaseGroups`, in order (test names are known before the node runs). */
export const hostileGroupNames = ['KV Range', 'KV Put', 'KV DeleteRange and Compact', 'KV Txn', 'Watch streams', 'Lease, and LeaseKeepAlive streams', 'Cluster', 'Maintenance', 'Lock and Election', 'dkv.v1 KV, Counter and Watch'] as const;

/** The cases by service, each with its number of runs for a single node (a 60 s budget for all). */
export function hostileCaseGroups(facts: ClusterFacts): ReadonlyArray<readonly [string, fc.Arbitrary<Case>, number]> {
  return [
  ['KV Range', rangeCase, 60],
  ['KV Put', fc.oneof({ weight: 12, arbitrary: putCase }, { weight: 1, arbitrary: putAtLimitCase }), 60],
  ['KV DeleteRange and Compact', fc.oneof(deleteCase, compactCase), 50],
  ['KV Txn', fc.oneof({ weight: 8, arbitrary: txnCase }, { weight: 1, arbitrary: txnLimitCase }), 60],
  ['Watch streams', watchCase, 40],
  ['Lease, and LeaseKeepAlive streams', fc.oneof(leaseCase, keepAliveCase), 60],
  ['Cluster', clusterCase(facts), 40],
  ['Maintenance', maintenanceCase(facts), 40],
  ['Lock and Election', concurrencyCase, 60],
  ['dkv.v1 KV, Counter and Watch', dkvCase, 80],
  ];
}
