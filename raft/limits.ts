/**
 * Every limit and default of the Raft core, in one place (units last). The relations between them
 * are asserted when this module loads.
 */
import { assert } from './assert.js';

/** Ticks a follower waits for the leader before it campaigns (randomised up to twice this). */
export const electionTicksDefault = 10;
/** Ticks between heartbeats from the leader. */
export const heartbeatTicksDefault = 1;
/** Smallest election timeout a configuration may set. */
export const electionTicksMin = 2;
/** Largest election timeout a configuration may set (keeps timeouts meaningful in ticks). */
export const electionTicksMax = 1_000_000;

/** Bytes of entries in one append message (at least one entry is always sent). */
export const messageBytesMaxDefault = 1024 * 1024;
/** Readies in flight at once unless configured (1: persist, then advance, then the next). */
export const readiesInFlightMaxDefault = 1;
/** Append messages in flight to one follower in the replicate state. */
export const inflightMessagesMaxDefault = 256;
/** Payload bytes in flight to one follower in the replicate state. */
export const inflightBytesMaxDefault = 32 * 1024 * 1024;
/** Payload bytes of entries a leader has appended but not yet committed. */
export const uncommittedEntriesBytesMaxDefault = 64 * 1024 * 1024;
/** Bytes of committed entries handed to the application in one Ready. */
export const committedEntriesBytesPerReadyMaxDefault = 16 * 1024 * 1024;
/** ReadIndex requests a leader keeps waiting for a heartbeat quorum (or its first commit). */
export const readIndexPendingMax = 16_384;
/** Bytes of a ReadIndex request context. */
export const readIndexContextBytesMax = 1024;
/** Entries in one proposal message. */
export const proposalEntriesMax = 16_384;
/**
 * Lease-based reads: how much faster one node's ticks may run than another's (as a fraction).
 * A leader's lease is shortened by this much so that no follower can vote for a new leader
 * before the lease ends, as long as tick rates differ by less than this.
 */
export const leaseClockRateErrorMax = 0.25;
/** Bytes a message's entries are counted with beyond their payload (term, index, type, framing). */
export const entryHeaderBytes = 24;

assert(leaseClockRateErrorMax > 0 && leaseClockRateErrorMax < 1, 'the lease clock error is a fraction');
assert(electionTicksMin >= 2, 'an election timeout must leave room for a heartbeat');
assert(heartbeatTicksDefault < electionTicksDefault, 'heartbeats must come faster than elections');
assert(electionTicksDefault >= electionTicksMin, 'default election timeout below the minimum');
assert(inflightMessagesMaxDefault > 0, 'an inflight window must admit at least one message');
assert(messageBytesMaxDefault <= inflightBytesMaxDefault, 'one message must fit the inflight bytes');
assert(
  committedEntriesBytesPerReadyMaxDefault >= messageBytesMaxDefault,
  'a Ready must be able to carry at least one full message of entries',
);
