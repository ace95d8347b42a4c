/**
 * A client's GOAWAY does not make the server refuse the calls that client still sends: calls in
 * flight finish, and streams it opens while one of its streams is open — in particular the
 * HEADERS of calls it had queued, which follow its GOAWAY in the same write — are served, as
 * etcd's server (grpc-go) serves them.
 *
 * Why: Node's HTTP/2 core answers a received GOAWAY with code NO_ERROR by calling
 * `session.close()` (lib/internal/http2/core.js, `onGoawayData`), which sends a GOAWAY of its own
 * naming the last stream it processed and refuses every stream after it. A client that closes its
 * channel while a call is queued sends exactly that sequence: grpc-js's channel close is
 * `session.close()`, and nghttp2 sends the GOAWAY frame before the HEADERS that open queued
 * streams. The call then ends as REFUSED_STREAM, grpc-js retries it on the channel it just closed,
 * and the caller gets `14 UNAVAILABLE: No connection established` (the etcd3 client's election
 * suite failed this way when it cancelled a watch and closed while a DeleteRange was queued).
 * grpc-go's server ignores a client's GOAWAY (internal/transport/http2_server.go:
 * `case *http2.GoAwayFrame:` is an empty case, marked as work its authors have not done).
 *
 * Where Node must differ from grpc-go: nghttp2 stops wanting to read once a GOAWAY was received
 * and no stream is open (`nghttp2_session_want_read`), and Node then stops reading the socket for
 * good — a session left open at that point would never see another frame, nor the client's FIN.
 * So once the client went away and its last stream has closed, the session is closed as Node
 * would have closed it at once (a stream the client opens later is refused, as before). For the
 * same reason, with no stream open, only HEADERS read together with the GOAWAY are served: those
 * arriving in a later read (a TLS record or TCP segment of their own) are not read at all.
 *
 * How: `serveThroughClientGoaway` listens to each session the server accepts (client-sessions.ts).
 * Node emits a session's 'goaway' event synchronously just before its `close()` call; the
 * listener turns that one call into a no-op (and takes the no-op away on the next tick should
 * Node not make it). The idle check runs from `setImmediate`, after the rest of the bytes read
 * with the GOAWAY (queued HEADERS among them) have opened their streams. Every other `close()` —
 * the server's own shutdown (`tryShutdown`, `forceShutdown`), grpc-js's max connection age — is
 * Node's own. A GOAWAY with an error code still destroys the session.
 */
import { constants as http2Constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { assert } from '../../raft/index.js';

/** Makes a session keep serving its calls after its client sent GOAWAY (the module's comment says how). */
export function serveThroughClientGoaway(session: ServerHttp2Session): void {
  // invariant: streamsOpen >= 0 (the session's streams seen open and not yet closed)
  let streamsOpen = 0;
  let clientWentAway = false;
  const closeIfIdle = (): void => {
    if (streamsOpen === 0 && !session.closed && !session.destroyed) session.close();
  };
  session.on('stream', (stream: ServerHttp2Stream) => {
    streamsOpen++;
    stream.once('close', () => {
      streamsOpen--;
      assert(streamsOpen >= 0, 'a stream closes once');
      if (clientWentAway && streamsOpen === 0) setImmediate(closeIfIdle);
    });
  });
  session.on('goaway', (code: number) => {
    if (code !== http2Constants.NGHTTP2_NO_ERROR) return;
    clientWentAway = true;
    skipNextClose(session);
    setImmediate(closeIfIdle);
  });
}

/** Closes Node would make right after a GOAWAY it reported, per session, not made yet. */
const closesToSkip = new WeakMap<ServerHttp2Session, number>();

/** Makes the session's next `close()` — Node's, right after its 'goaway' event — a no-op. */
function skipNextClose(session: ServerHttp2Session): void {
  const pending = closesToSkip.get(session) ?? 0;
  closesToSkip.set(session, pending + 1);
  if (pending > 0) return;
  const restore = (): void => {
    closesToSkip.delete(session);
    delete (session as { close?: unknown }).close;
  };
  const skip = (): void => {
    const left = (closesToSkip.get(session) ?? 1) - 1;
    if (left > 0) closesToSkip.set(session, left);
    else restore();
  };
  Object.defineProperty(session, 'close', { value: skip, configurable: true, writable: true });
  process.nextTick(restore);
}
