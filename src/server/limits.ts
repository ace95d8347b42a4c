/**
 * Limits and fixed intervals of the node process (units last). The request pipeline's limits —
 * pending writes, forwarded writes, pending reads, the apply gap — belong to the shard runtime
 * and are in src/runtime/limits.ts; they are re-exported here so one file of the server lists
 * every limit a client can meet. Load-time asserts say how they relate.
 */
import { assert } from '../../raft/index.js';
import { mvccLimits } from '../../storage/index.js';
import { runtimeLimits as pipeline } from '../runtime/index.js';

export { pipeline };

/** gRPC adds framing around a request; etcd allows this much on top of --max-request-bytes. */
export const grpcOverheadBytes = 512 * 1024;

/** A request waits this long for Raft before `request timed out`, plus two election timeouts (etcd's rule). */
export const requestTimeoutBaseMs = 5000;

/** Entries kept behind a snapshot for slow followers, at most (and at most --snapshot-count). */
export const snapshotCatchUpEntriesMax = 5000;

/** How often MoveLeader looks whether the transfer happened. */
export const moveLeaderPollMs = 20;

/** How long the metrics listener keeps an idle connection open (longer than its clients do). */
export const metricsKeepAliveMs = 65_000;

/**
 * A member that learnt it was removed keeps its sockets open this many election timeouts before
 * it stops: answers to requests other members forwarded to it (the MemberRemove that removed a
 * leader, say) and its last heartbeats still go out.
 */
/**
 * A start on a new data dir asks its peers for this many election timeouts before it concludes
 * that the cluster is being founded (no peer answered) and bootstraps.
 */
export const clusterQueryRetryElections = 3;
export const removedStopGraceElections = 1;
/** A member that proposed its own removal asks its peers' member lists this often whether it is done… */
export const ownRemovalPollMs = 200;
/** …for at most this long. */
export const ownRemovalWatchMs = 30_000;

/** A member's attributes publication that got no answer is tried again after this many election timeouts. */
export const publishRetryElections = 2;

/** How long a stopping node waits for gRPC calls in progress before cutting them. */
export const shutdownGraceMs = 2000;

/**
 * Keep-alives one stream may have read and not yet answered, or answered into a full stream
 * buffer, before the server stops reading it (backpressure).
 */
export const leaseKeepAlivesPendingPerStreamMax = 256;

/**
 * A lock or election key is name + "/" + the lease id in hex (Go's %x of an int64): at most 16
 * hex digits, or 17 with the sign of a negative id, after the slash.
 */
export const lockKeySuffixBytesMax = 1 + 17;

/** The longest lock or election name: its keys must stay within the store's key limit. */
export const lockNameBytesMax = mvccLimits.keyBytesMax - lockKeySuffixBytesMax;

/**
 * etcd's server runs a Lock or Campaign with lease 0 under a session lease it grants with this
 * TTL (concurrency's defaultSessionTTL) and never keeps alive.
 */
export const sessionLeaseTtlSeconds = 60;

/**
 * Times a Lock or Campaign with lease 0 draws a new random key suffix when the one it drew is
 * taken (64 random bits: a second draw is already beyond belief).
 */
export const sessionKeyDrawsMax = 4;

/** Bytes of responses an Election Observe stream holds for a slow client before it falls back to history. */
export const observeBufferBytesMax = 4 * 1024 * 1024;

/** The request timeout of a node with the given election timeout (ms). */
export function requestTimeoutMs(electionTimeoutMs: number): number {
  return requestTimeoutBaseMs + 2 * electionTimeoutMs;
}

/** Wait between attempts at a membership change on one group (its leader may just have been elected). */
export const membershipRetryMs = 100;
/** An attempt at a membership change is not started with less time than this left in its call. */
export const membershipAttemptMinMs = 100;
/** Election timeouts between membership-sync passes (each retries what the last could not do). */
export const membershipSyncPassElections = 1;
/** Election timeouts a membership-sync change may take before it is tried again. */
export const membershipSyncChangeElections = 2;
/**
 * How long a member the list names must be missing from a group before membership-sync adds it:
 * longer than a membership call lasts (its request timeout), plus two election timeouts.
 */
export function membershipAddAfterMs(electionTimeoutMs: number): number {
  return requestTimeoutMs(electionTimeoutMs) + 2 * electionTimeoutMs;
}

assert(membershipRetryMs > 0 && membershipAttemptMinMs > 0, 'membership retry intervals must be positive');
assert(membershipSyncPassElections >= 1 && membershipSyncChangeElections >= 1, 'membership-sync runs at least once per election timeout');
assert(membershipAddAfterMs(1) > requestTimeoutMs(1), 'membership-sync adds only after a membership call has ended');

assert(moveLeaderPollMs > 0, 'the poll interval must be positive');
assert(lockNameBytesMax > 0, 'a lock name must fit a key');
assert(sessionKeyDrawsMax >= 1 && sessionLeaseTtlSeconds > 0, 'a lease-0 session needs a key and a TTL');
assert(observeBufferBytesMax > 0, 'an observer needs room for a response');
assert(publishRetryElections >= 1, 'a publication must get at least one election timeout');
assert(leaseKeepAlivesPendingPerStreamMax >= 1, 'a keep-alive stream must be able to renew');

/** etcd's quota cost of a key-value write beyond its key and value bytes (quota.go's kvOverhead). */
export const quotaKvOverheadBytes = 256;

/** etcd's quota cost of a lease grant (quota.go's leaseOverhead). */
export const quotaLeaseOverheadBytes = 64;

/** Segments one defragment step rewrites before it yields to the event loop (the node keeps serving). */
export const defragmentSegmentsPerStep = 8;

/**
 * Bytes of entries applied to the data store since the last settle that make the next idle moment
 * settle memory (memory-settle.ts) — at least this, and at least `settleChurnStoreFraction` of the
 * store's arenas: a settle's collections cost in proportion to what the heap holds, so a small
 * store settles after small bursts and a large one only after proportionally larger ones.
 */
export const settleChurnBytesMin = 1024 * 1024;

/** The share of the store's arena bytes that must be written since the last settle (with `settleChurnBytesMin`). */
export const settleChurnStoreFraction = 1 / 8;

/** How long no entry is applied before the node settles memory. */
export const settleIdleMs = 2_000;

/** The least time between two settles (each is one or two full collections, tens of ms). */
export const settleIntervalMsMin = 10_000;

/**
 * How long after a settle, and after the last entry applied since, the node collects once more.
 * V8 shrinks its young generation (two semi-spaces of up to --max-semi-space-size each, resident
 * once a burst has filled them) only in a collection that finds its recent allocation rate low
 * and not zero, measured over its last 5 seconds: the settle's own collections come right after
 * the burst, and an idle node may not collect again for hours.
 */
export const settleLateCollectMs = 6_000;

/**
 * What the late collection's compaction of V8's whole old generation is assumed to cost, in ms of
 * pause per MiB of heap: it grows with the live heap it moves. Measured on a 2-vCPU VM: a test
 * program's 15.5 MB live in a sparse 90 MB old space took 92 ms (6 ms per MiB); nodes holding
 * 500k or 2M keys, whose heap is ~20 MB (the keys live in the store's arenas, outside it), took
 * 55–87 ms.
 */
export const settleLateCompactMsPerMib = 6;

/**
 * The share of the election timeout the late collection's compacting pause may take (estimated
 * by `settleLateCompactMsPerMib`): a heap larger than that gets a plain full collection. With the
 * default election timeout of 1 s (as etcd's), heaps up to ~41 MiB are compacted (a pause of
 * ~250 ms).
 */
export const settleLateCompactElectionFraction = 0.25;

/** A settle after a compaction rewrites the store when less than this fraction of its arenas is in use. */
export const settleRewriteInUseFraction = 0.75;

/** How often revision-mode auto-compaction looks at the revision (etcd's revision compactor: 5 min). */
export const autoCompactionRevisionCheckMs = 5 * 60_000;

/** Periodic auto-compaction looks this often at most (etcd: every retention/10 below an hour). */
export const autoCompactionPeriodicCheckMsMax = 60 * 60_000;

/** Periodic auto-compaction looks at least this far apart (a bound for tiny retentions). */
export const autoCompactionPeriodicCheckMsMin = 100;

/** The meta shard's leader looks for store changes nobody finished (store-admin.ts's repairStores) every this many election timeouts. */
export const storeRepairElections = 10;
/** Election timeouts between two looks of the placement loop on the meta shard's leader (placement.ts): at most one move starts per look. */
export const placementPassElections = 1;

/** A store still being created after this many request timeouts is finished (or dropped) by the repair: its create stopped half way. */
export const storeCreateStaleRequestTimeouts = 3;

/** The automatic splitter (auto-split.ts) looks at the shards this node hosts this often. */
export const shardSplitCheckMs = 1000;
/** Keys sampled per shard and window to choose where a load split cuts. */
export const shardSplitLoadSampleKeys = 64;
/** A sampled key keeps at most its first this many bytes (64 samples of 1.5 MiB keys would hold ~96 MiB per shard). */
export const shardSplitLoadSampleKeyBytesMax = 512;
/** An automatic split leaves at least this share of the shard's bytes (size) or sampled requests (load) on each side, or is not made. */
export const shardSplitSideMin = 0.25;
/** A shard whose automatic split was refused or failed is not tried again before this long. */
export const shardSplitRetryMs = 30_000;

/** A forwarded call's method path is at most this many bytes (etcd's longest is under 64). */
export const forwardedPathBytesMax = 256;
/** A forwarded call's caller (its user name and auth revision, as JSON) is at most this many bytes. */
export const forwardedCallerBytesMax = 1024;
/**
 * A forwarded call's answer is at most this many bytes: what one peer answer may carry
 * (`responsePayloadBytesMax`). A larger one is `forwarded-response-too-large`: a Range of many
 * keys is asked of a member that hosts the shard, or in pages (`limit`).
 */
export const forwardedAnswerBytesMax = 4 * 1024 * 1024;
/** A forwarded call waits at most this long for the replica's answer, whatever the client's deadline. */
export const forwardedCallTimeoutMsMax = 60_000;
/**
 * A forwarded call follows a replica's newer route (its map places the shard on other members at
 * a higher epoch) at most this many times before the client gets the refusal and retries.
 */
export const forwardedRedirectsMax = 2;
/** Without a client deadline, a forwarded call waits this many request timeouts (a forwarded ShardSplit makes several proposals). */
export const forwardedCallRequestTimeouts = 3;

/**
 * A client connection's receive window (HTTP/2's default is 64 KiB): room for several large
 * requests in flight at once. Node acknowledges connection-level data as soon as it reads it from
 * the socket, so this bounds bytes in flight, not bytes held. Measured (bench/README.md): a bulk
 * load of 128-put Txns (~17 KB each), 8 in flight on one connection, took 8–27% less server CPU
 * than with 64 KiB, its Txns sharing synced batches twice as often.
 */
export const clientConnectionWindowBytes = 4 * 1024 * 1024;

/**
 * The receive window each stream of a client connection opens with (HTTP/2's SETTINGS
 * INITIAL_WINDOW_SIZE, default 64 KiB). A stream's data is acknowledged as its call reads it, so
 * a paused stream (grpc-js between messages, a LeaseKeepAlive stream at its pending bound) holds
 * up to this much: `streamsPerConnectionMax` of them up to that many times over. Not measured on
 * its own (the bench's Txns fit 64 KiB): a request larger than 64 KiB waits for about a quarter of
 * the window updates it waited for before.
 */
export const clientStreamWindowBytes = 256 * 1024;

/** HTTP/2's initial window of a stream and of a connection (RFC 9113, 6.9.2). */
export const http2InitialWindowBytes = 65_535;
/** HTTP/2's largest window (RFC 9113, 6.9.1): Node throws on more, and would on a client's first connection. */
const http2WindowBytesMax = 2 ** 31 - 1;
assert(
  clientStreamWindowBytes >= http2InitialWindowBytes && clientStreamWindowBytes <= clientConnectionWindowBytes && clientConnectionWindowBytes <= http2WindowBytesMax,
  "a client connection's windows are at least HTTP/2's initial one, the stream's within the connection's, both within HTTP/2's largest",
);
