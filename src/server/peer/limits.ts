/**
 * Every limit and default of the peer transport, in one place (units last). The relations between
 * them are asserted when this module loads.
 */
import { limits as raftLimits } from '../../../raft/index';

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`peer/limits: ${message}`);
}

/** The wire protocol version this build speaks (the frame header and the hello carry it). */
export const protocolVersion = 1;

/** Bytes of one encoded frame (a batch, a hello, a snapshot header or one snapshot chunk). */
export const frameBytesMax = 16 * 1024 * 1024;
/**
 * A turn's queue is cut into frames of about this many bytes. It is below `frameBytesMax` so that
 * one oversized message still fits a frame of its own.
 */
export const frameBytesTarget = 4 * 1024 * 1024;
/** Bytes grpc may add around one of our frames (length prefix, headers); its message limits are set with this slack. */
export const grpcMessageSlackBytes = 64 * 1024;
/** Messages in one batch frame. */
export const frameMessagesMax = 65_536;
/** Entries in one message. */
export const messageEntriesMax = 65_536;
/** Bytes of a message's context (ReadIndex contexts are 1 KiB in the core; leave room). */
export const messageContextBytesMax = 64 * 1024;
/** Member ids in one list of a snapshot's configuration state. */
export const confStateMembersMax = 4096;

/** A MsgSnap whose snapshot data is larger than this is sent as chunk frames of this size. */
export const snapshotChunkBytes = 1024 * 1024;
/** Bytes of one snapshot the receiver will reassemble. */
export const snapshotBytesMax = 1024 * 1024 * 1024;

/** Bytes of messages queued for one peer (snapshot data excluded: it is referenced, not copied). */
export const peerQueueBytesMax = 64 * 1024 * 1024;
/** Messages queued for one peer. */
export const peerQueueMessagesMax = 65_536;
/** Chunked snapshots queued for one peer (each holds a reference to its whole image). */
export const peerQueueSnapshotsMax = 4;

/** First reconnect delay after a stream to a peer fails. */
export const reconnectDelayMsMin = 50;
/** Largest reconnect delay. */
export const reconnectDelayMsMax = 2000;
/** A stream whose peer has not said hello within this time is closed. */
export const helloTimeoutMs = 5000;
/** HTTP/2 keepalive pings detect a silent peer within about time + timeout. */
export const keepaliveTimeMs = 10_000;
export const keepaliveTimeoutMs = 5000;
/** Distinct unknown shard ids a transport remembers having logged (each is logged once). */
export const unknownShardsLoggedMax = 1024;

assert(frameBytesTarget < frameBytesMax, 'the frame target must leave room below the maximum');
assert(
  raftLimits.messageBytesMaxDefault + 64 * 1024 <= frameBytesMax - frameBytesTarget,
  'one full append message must fit a frame even when it follows a full target',
);
assert(snapshotChunkBytes + 64 <= frameBytesMax, 'a snapshot chunk must fit a frame');
assert(snapshotChunkBytes <= snapshotBytesMax, 'a chunk cannot exceed a snapshot');
assert(snapshotBytesMax <= 2 ** 32 - 1, 'snapshot sizes are written as u32 on the wire');
assert(peerQueueBytesMax >= frameBytesMax, 'a peer queue must hold at least one full frame');
assert(reconnectDelayMsMin > 0 && reconnectDelayMsMin <= reconnectDelayMsMax, 'reconnect delays out of order');
assert(
  raftLimits.readIndexContextBytesMax <= messageContextBytesMax,
  'the transport must carry any context the Raft core produces',
);
