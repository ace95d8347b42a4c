/**
 * What the node does to each client connection (HTTP/2 session) its gRPC server accepts, before
 * the session reads a frame (`acceptClientSession`): it serves through the client's GOAWAY
 * (client-goaway.ts) and opens wide receive windows (`widenReceiveWindows`).
 *
 * How: grpc-js makes every HTTP/2 server it listens with in its (private) `createHttp2Server`; it
 * is wrapped on one `grpc.Server` instance so each HTTP/2 server is handed to the node before it
 * accepts a connection (`onClientHttp2Servers`): the node gives it a 'session' listener, and the
 * unary calls it serves itself (direct-unary.ts). grpc-js is pinned to one version (package.json);
 * its private method is asserted, so a version that renames it fails at start-up rather than
 * silently dropping what the listener does.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Http2SecureServer, Http2Server, ServerHttp2Session } from 'node:http2';
import { assert } from '../../raft/index.js';
import { serveThroughClientGoaway } from './client-goaway.js';
import { clientConnectionWindowBytes, clientStreamWindowBytes } from './limits.js';

export type Http2ServerOfGrpc = Http2Server | Http2SecureServer;
type CreateHttp2Server = (credentials: grpc.ServerCredentials) => Http2ServerOfGrpc;

/** Runs `setup` on every HTTP/2 server `server` creates, before it listens. Call once, before the first `bindAsync`. */
export function onClientHttp2Servers(server: grpc.Server, setup: (http2Server: Http2ServerOfGrpc) => void): void {
  const internals = server as unknown as { createHttp2Server?: unknown };
  const create = internals.createHttp2Server;
  assert(typeof create === 'function', "grpc-js's Server has no createHttp2Server: client-sessions.ts needs another hook");
  assert(!Object.hasOwn(server, 'createHttp2Server'), 'onClientHttp2Servers is applied once per server');
  const createHttp2Server: CreateHttp2Server = (credentials) => {
    const http2Server = (create as CreateHttp2Server).call(server, credentials);
    setup(http2Server);
    return http2Server;
  };
  internals.createHttp2Server = createHttp2Server;
}

/**
 * Opens the session's receive windows to `clientStreamWindowBytes` per stream (a SETTINGS frame)
 * and `clientConnectionWindowBytes` for the connection (a WINDOW_UPDATE). Node and grpc-js keep
 * HTTP/2's initial 64 KiB for both, so a client sending a few large requests at once (Txns of
 * many puts) stops after 64 KiB and waits for the server to read and acknowledge, in many small
 * reads and WINDOW_UPDATEs; grpc-go, etcd's server, grows its windows to fit the connection's
 * bandwidth-delay product. What the windows let a client have the server hold is said at the
 * constants (limits.ts). Both calls are made in the 'session' event, where Node has set the
 * session up (a TLS one after its handshake) and nothing can have destroyed it yet.
 */
export function widenReceiveWindows(session: ServerHttp2Session): void {
  session.settings({ initialWindowSize: clientStreamWindowBytes });
  session.setLocalWindowSize(clientConnectionWindowBytes);
}

/** Everything the node does to a client session it accepts (see the module's comment). */
export function acceptClientSession(session: ServerHttp2Session): void {
  serveThroughClientGoaway(session);
  widenReceiveWindows(session);
}
