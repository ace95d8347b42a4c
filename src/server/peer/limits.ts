/**
 * Every limit and default of the peer transport, in one place (units last). The relations between
 * them are asserted when this module loads.
 */
import { limits as raftLimits } from '../../../raft/index.js';

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
/** The link's framing version (wire.ts), sent in the preamble; both sides must speak the same. */
export const linkVersion = 1;
/** Bytes of one link record's kind and body: the largest frame plus its kind byte. */
export const linkRecordBytesMax = frameBytesMax + 1;
/**
 * A frame smaller than this is copied behind its record header and written in one call; a larger
 * one is written after its header, uncopied (the copy would cost more than the second write).
 */
export const linkCopyBytesMax = 64 * 1024;
/** Bytes of the first record of a link (the preamble: magic, version, features). */
export const linkPreambleBytesMax = 1024;
/** Details of a close record are cut to this many bytes, when sent and when read (they are log lines, not data). */
export const closeDetailsBytesMax = 4096;
/**
 * Bytes of one link record until the link is live (its hello accepted): what an unauthenticated
 * side may make this node buffer per link. Enough for a hello frame or a close record; the limit
 * rises to `linkRecordBytesMax` once the hello is accepted.
 */
export const linkRecordBytesMaxBeforeHello = 8 * 1024;
/**
 * Accepted sockets that are not a live link (TLS handshake, preamble and hello not yet done, or
 * closing): a new connection beyond it is closed at once. Bounds what strangers on the peer port
 * hold, with `linkRecordBytesMaxBeforeHello` each.
 */
export const peerLinksPendingMax = 64;
/** A closed link's socket is destroyed after this long if its last writes (its close record) have not drained. */
export const linkCloseLingerMs = 1000;
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
/**
 * A link whose peer has not said hello within this time is closed; a TLS handshake on the peer
 * port must also finish within it (the server's `handshakeTimeout`).
 */
export const helloTimeoutMs = 5000;
/**
 * A member that accepts a peer's streams (the peer has the smaller id) and has had none from it
 * for this long dials it once to ask whether it is still a member: the peer refuses the hello
 * either with the side rule (fine) or because this member was removed (it then stops).
 */
export const removedProbeAfterMs = 5000;
/** How often those probes go out while the silence lasts. */
export const removedProbeIntervalMs = 5000;
/** The probe check runs this many times per probe interval (so a probe is at most a quarter interval late). */
export const removedProbeChecksPerInterval = 4;
/** The probe check runs at most this often (tests shorten the interval). */
export const removedProbeCheckMsMin = 10;
/** How long a start-up asks a peer for the cluster's members before giving up on it. */
export const clusterQueryTimeoutMs = 2000;
/** A start-up that heard no peer asks again after this long (until its deadline). */
export const clusterQueryRetryMs = 200;
/** Bytes of a cluster-query answer (the member list as JSON). */
export const clusterQueryBytesMax = 1024 * 1024;
/** Every live link gets a ping record this often (one timer per transport, not per link). */
export const keepaliveIntervalMs = 5000;
/** A live link that has received nothing, pings included, for this long is closed as dead. */
export const keepaliveSilenceMsMax = 15_000;
/**
 * Links refused admission (see admission.ts) are logged at warn at most this many times per
 * `refusalWarningIntervalMs`; beyond, at debug, and the next warning says how many were not
 * (anyone who reaches the peer port can make it refuse; the metric counts every one).
 */
export const refusalWarningsPerIntervalMax = 20;
export const refusalWarningIntervalMs = 10_000;
/** Distinct unknown shard ids a transport remembers having logged (each is logged once). */
export const unknownShardsLoggedMax = 1024;

// Requests and responses (`PeerTransport.request`, `onRequest`).

/**
 * Bytes the request and response frames add around their payload (frame header, request id,
 * status, length). The codec asserts that its headers fit; a refusal's code and message are
 * bounded separately below.
 */
export const requestFrameHeaderBytesMax = 32;
/** Bytes of one request's payload (the default --max-request-bytes is 1.5 MiB; leave room). */
export const requestPayloadBytesMax = 8 * 1024 * 1024;
/** Bytes of one response's payload (answers to forwarded requests are small; see the budget below). */
export const responsePayloadBytesMax = 4 * 1024 * 1024;
/** Bytes of a refusal's code: a short token of [a-z0-9._-] chosen by the answering handler. */
export const refusalCodeBytesMax = 64;
/** Bytes of a refusal's message (UTF-8); longer messages are cut at a character boundary. */
export const refusalMessageBytesMax = 1024;
/** Outgoing requests to one peer awaiting their answer (queued or written). */
export const requestsPendingPerPeerMax = 1024;
/** Bytes of outgoing request frames queued for one peer and not yet handed to the stream. */
export const requestQueueBytesMax = 64 * 1024 * 1024;
/**
 * Incoming requests of one peer being handled at once (counted until the answer is handed to the
 * stream); beyond it a request is answered 'busy' at once and its handler does not run.
 */
export const requestsHandlingPerPeerMax = 256;
/** 'busy' and 'unsupported' answers queued on one stream; beyond it the request gets no answer. */
export const refusalsQueuedPerPeerMax = 1024;
/** The longest timeout a caller may give one request. */
export const requestTimeoutMsMax = 5 * 60 * 1000;
/**
 * Worst-case memory of the answers queued for one peer while its stream is stalled:
 * `requestsHandlingPerPeerMax` full responses.
 */
export const responseQueueBytesBudget = 1024 * 1024 * 1024;

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
assert(
  linkRecordBytesMaxBeforeHello >= linkPreambleBytesMax && linkRecordBytesMaxBeforeHello >= 2 + closeDetailsBytesMax,
  'a preamble and a full close record must fit before hello',
);
assert(linkRecordBytesMaxBeforeHello <= linkRecordBytesMax, 'the limit before hello must be the smaller');
assert(peerLinksPendingMax > 0, 'some links must be able to say hello');
assert(linkCloseLingerMs > 0 && linkCloseLingerMs <= helloTimeoutMs, 'a closing link must not outlive an unanswered hello');
assert(refusalWarningsPerIntervalMax > 0 && refusalWarningIntervalMs > 0, 'some refusals must be logged at warn');
assert(removedProbeChecksPerInterval >= 1 && removedProbeCheckMsMin > 0, 'probe checks must run');
assert(clusterQueryBytesMax + 1 <= linkRecordBytesMax, 'a cluster-query answer must fit a link record');
assert(keepaliveSilenceMsMax >= 2 * keepaliveIntervalMs, 'a live peer must get at least two pings in before its link is called dead');
assert(requestPayloadBytesMax + requestFrameHeaderBytesMax <= frameBytesMax, 'a full request must fit a frame');
assert(responsePayloadBytesMax + requestFrameHeaderBytesMax <= frameBytesMax, 'a full response must fit a frame');
assert(
  requestFrameHeaderBytesMax + 8 + refusalCodeBytesMax + refusalMessageBytesMax <= frameBytesMax,
  'a refusal (two length prefixes, code and message) must fit a frame',
);
assert(refusalCodeBytesMax >= 'unsupported'.length, 'the transport\'s own refusal codes must fit');
assert(requestQueueBytesMax >= requestPayloadBytesMax + requestFrameHeaderBytesMax, 'a request queue must hold one full request');
assert(requestsPendingPerPeerMax > 0 && requestsHandlingPerPeerMax > 0, 'request limits must be positive');
assert(
  requestsHandlingPerPeerMax * responsePayloadBytesMax <= responseQueueBytesBudget,
  'the answers one peer may have queued (a slot is held until its answer is written) must stay within budget',
);
assert(refusalsQueuedPerPeerMax >= requestsPendingPerPeerMax, 'a peer of this build must always get its busy answers');
assert(Number.isSafeInteger(requestTimeoutMsMax) && requestTimeoutMsMax <= 2 ** 31 - 1, 'request timeouts must fit setTimeout');
