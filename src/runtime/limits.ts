/**
 * Every limit of the shard runtime, in one place (units last). The relations between them are
 * asserted when this module loads. A client that hits one of the pending-request limits gets
 * `etcdserver: too many requests` (RESOURCE_EXHAUSTED), refused before anything is proposed.
 */
import { assert } from '../../raft/index.js';

/**
 * Readies of one group in flight at once: while one is being written, the next one's messages
 * (the leader's next appends) already go out and its committed entries are applied.
 */
export const readiesInFlightMax = 4;

/**
 * How many times a client command refused for an old auth revision (an auth change committed
 * after its caller was found) is proposed again with its caller found anew (etcd retries until
 * its request times out; each retry here needs another auth change to have come in between).
 */
export const authOldRevisionProposalsMax = 4;

/**
 * Writes one shard holds on this node at once: queued for the next cycle, in Raft waiting to
 * commit, or forwarded to the leader and waiting to be applied here.
 */
export const proposalsPendingMax = 16_384;

/** Bytes of commands one shard holds in pending writes (each counted with its payload). */
export const proposalBytesPendingMax = 64 * 1024 * 1024;

/**
 * Writes proposed while this node was not the leader (Raft forwarded them) whose place in the
 * log is not known yet. They are the ones a lost message or a leader failure can leave behind, so
 * they get a tighter bound than writes in general.
 */
export const forwardedProposalsPendingMax = 8_192;

/** Linearizable reads one shard holds on this node (queued, in a ReadIndex round, or waiting to apply). */
export const readsPendingMax = 16_384;

/**
 * When committed entries run this far ahead of applied ones, new writes are refused (etcd's
 * maxGapBetweenApplyAndCommitIndex): the node is not keeping up, and queueing more only grows
 * memory.
 */
export const applyGapEntriesMax = 5_000;

/**
 * After a leader change, a forwarded write whose place in the log is still unknown waits at most
 * this many election timeouts for its entry to show up in this node's log before it is released
 * with `request timed out, possibly due to previous leader failure` (its outcome is unknown).
 */
export const leaderChangeGraceElections = 2;
/**
 * A write that arrives while this node knows no leader waits this many election timeouts for one
 * (then Raft takes it) before it is refused with `etcdserver: no leader`.
 */
export const noLeaderWaitElections = 2;

/**
 * Callbacks of settled requests run per scheduler turn. A ReadIndex round can release thousands
 * of reads at once, and each answer is a response to build and write: spread over turns, the
 * loop still ticks and heartbeats in between.
 */
export const callbacksPerTurnMax = 512;

/**
 * Request ids a process may issue per millisecond of its life: ids start at the start time times
 * this, so a restarted process never reuses an id an entry of its previous life may still carry.
 */
export const requestIdsPerMs = 1024;

/** Bytes of a Raft snapshot's engine sections the state machine encodes per scheduler turn. */
export const snapshotSectionChunkBytesMax = 1024 * 1024;

/**
 * Bytes of entries kept in the log behind a snapshot at most (besides the entry count the runtime
 * is given), so a store written in large batches does not keep, and read back at every start,
 * hundreds of megabytes of log a lagging follower could get from the snapshot instead.
 */
export const snapshotCatchUpBytesMax = 16 * 1024 * 1024;

/** Sections (engines) one state-machine snapshot may hold. */
export const snapshotSectionsMax = 32;

/** Bytes of one snapshot frame as read back (a frame is a section chunk plus its header). */
export const snapshotFrameBytesMax = 16 * 1024 * 1024;

assert(callbacksPerTurnMax >= 1, 'at least one callback must run per turn');
assert(readiesInFlightMax >= 1, 'at least one Ready must be allowed in flight');
assert(forwardedProposalsPendingMax <= proposalsPendingMax, 'forwarded writes are a part of all pending writes');
assert(proposalBytesPendingMax >= 2 * 1024 * 1024, 'one maximal etcd request (1.5 MiB) must fit the pending bytes');
assert(leaderChangeGraceElections >= 1, 'an entry needs at least one election timeout to reach a new leader');
assert(snapshotSectionChunkBytesMax < snapshotFrameBytesMax, 'a section chunk must fit a frame');
assert(snapshotCatchUpBytesMax >= 2 * 1024 * 1024, 'a maximal etcd request (1.5 MiB) must fit behind a snapshot');

/**
 * A quiesced follower wakes (and starts counting towards an election) once it has heard nothing
 * from its leader's node for this many election timeouts. A node that leads quiesced groups
 * sends each of their followers' nodes one heartbeat per heartbeat interval, for one group only:
 * that is the liveness the others rely on.
 */
export const quiescedLeaderSilenceElections = 1;
