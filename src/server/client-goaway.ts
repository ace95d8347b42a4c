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
 * How: grpc-js makes every HTTP/2 server it listens with in its (private) `createHttp2Server`; it
 * is wrapped on this one `grpc.Server` instance so each HTTP/2 server gets a 'session' listener
 * before it accepts a connection. Node emits a session's 'goaway' event synchronously just before
 * its `close()` call; the listener turns that one call into a no-op (and takes the no-op away on
 * the next tick should Node not make it). The idle check runs from `setImmediate`, after the rest
 * of the bytes read with the GOAWAY (queued HEADERS among them) have opened their streams. Every
 * other `close()` — the server's own shutdown (`tryShutdown`, `forceShutdown`), grpc-js's max
 * connection age — is Node's own. A GOAWAY with an error code still destroys the session.
 */
import type * as grpc from '@grpc/grpc-js';
import { constants as http2Constants, type Http2SecureServer, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { assert } from '../../raft/index.js';

type Http2ServerOfGrpc = Http2Server | Http2SecureServer;
type CreateHttp2Server = (credentials: grpc.ServerCredentials) => Http2ServerOfGrpc;

/**
 * Makes `server` keep serving a connection's calls after its client sent GOAWAY. Call before the
 * first `bindAsync`: it applies to the HTTP/2 servers made afterwards.
 */
export function keepServingAfterClientGoaway(server: grpc.Server): void {
  // grpc-js is pinned to one version (package.json); its private method is asserted, so a version
  // that renames it fails at start-up rather than bringing the refused streams back silently.
  const internals = server as unknown as { createHttp2Server?: unknown };
  const create = internals.createHttp2Server;
  assert(typeof create === 'function', "grpc-js's Server has no createHttp2Server: client-goaway.ts needs another hook");
  assert(!Object.hasOwn(server, 'createHttp2Server'), 'keepServingAfterClientGoaway is applied once per server');
  const createHttp2Server: CreateHttp2Server = (credentials) => {
    const http2Server = (create as CreateHttp2Server).call(server, credentials);
    http2Server.on('session', serveThroughClientGoaway);
    return http2Server;
  };
  internals.createHttp2Server = createHttp2Server;
}

function serveThroughClientGoaway(session: ServerHttp2Session): void {
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
