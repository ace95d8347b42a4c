/**
 * The typed outcomes of `PeerTransport.request`: `PeerRequestError` for the caller, and
 * `PeerRequestRefusal` for a request handler to throw when it turns a request away.
 */
import { isRefusalCode, truncateUtf8 } from './codec.js';
import { refusalCodeBytesMax, refusalMessageBytesMax } from './limits.js';

/**
 * Why a request failed. Stable: callers switch on it; never rename one, only add.
 *
 * - `unreachable`: no live stream to the peer when asked, the peer is not (or no longer) a member,
 *   or the stream broke before the answer came. The request may or may not have been handled:
 *   `reachedHandler` tells ('no' if it was never written to a stream, 'maybe' if it was).
 * - `timeout`: no answer within `timeoutMs`. 'maybe' if it was written; a request still queued
 *   behind backpressure is withdrawn ('no').
 * - `too-many`: this node already had `requestsPendingPerPeerMax` requests (or
 *   `requestQueueBytesMax` bytes) pending for the peer, or the peer answered busy (it was handling
 *   `requestsHandlingPerPeerMax` of ours). Never handled ('no').
 * - `refused`: the peer's handler refused (threw); `refusal` carries its code and message
 *   ('yes': what a refusal means is the handler's contract).
 * - `unsupported`: the peer has no request handler, or runs a build without requests ('no').
 * - `stopped`: this transport is not running, or was stopped while the request was pending
 *   ('no' or 'maybe', as for `unreachable`).
 */
export type PeerRequestErrorCode = 'unreachable' | 'timeout' | 'too-many' | 'refused' | 'unsupported' | 'stopped';

/**
 * Whether the peer's handler can have run: 'no' (certainly not: safe to retry anywhere),
 * 'maybe' (the request left this node and the answer was lost), 'yes' (it ran and refused).
 */
export type PeerRequestReach = 'no' | 'maybe' | 'yes';

export class PeerRequestError extends Error {
  override readonly name = 'PeerRequestError';
  readonly code: PeerRequestErrorCode;
  readonly reachedHandler: PeerRequestReach;
  /** The peer handler's code and message, for `refused`. */
  readonly refusal: { readonly code: string; readonly message: string } | undefined;

  constructor(
    code: PeerRequestErrorCode,
    reachedHandler: PeerRequestReach,
    message: string,
    refusal?: { readonly code: string; readonly message: string },
  ) {
    super(message);
    this.code = code;
    this.reachedHandler = reachedHandler;
    this.refusal = refusal;
  }

  /** True when the peer's handler certainly did not run: the request can be retried safely. */
  get notDelivered(): boolean {
    return this.reachedHandler === 'no';
  }
}

/**
 * Thrown (or rejected with) by an `onRequest` handler to answer a request with a refusal. The
 * caller's promise rejects with a `PeerRequestError` of code 'refused' whose `refusal` is
 * `{ code, message }`. `code` is a token of [a-z0-9._-] of at most `refusalCodeBytesMax` bytes;
 * `message` is cut to `refusalMessageBytesMax` bytes of UTF-8.
 */
export class PeerRequestRefusal extends Error {
  override readonly name = 'PeerRequestRefusal';
  readonly code: string;

  constructor(code: string, message: string) {
    if (!isRefusalCode(code)) {
      throw new TypeError(`refusal code '${code}' must be a token of [a-z0-9._-] of 1..${refusalCodeBytesMax} bytes`);
    }
    super(truncateUtf8(message, refusalMessageBytesMax));
    this.code = code;
  }
}
