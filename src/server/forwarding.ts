/**
 * Client calls for shards this member does not host, carried to a member that does.
 *
 * A store created with `--replicas N` places each shard on N members; the others host no group
 * of it. A unary call of the data services (`forwardedServices`: etcd's KV, Lock's Unlock,
 * Election's Proclaim, Resign and Leader, the dkv.v1 KV, Counter and Admin calls — ShardSplit,
 * ShardCompact) routed there fails in the router with `ShardElsewhereError` before it does
 * anything, and the unary plumbing (service-common.ts) hands it here: the call's method path, its
 * request bytes as received and its caller (whom this member authenticated) go over the peer
 * link's request channel to one of the shard's replicas, which runs the same handler as if the
 * client had called it there, and its answer — the response's bytes or its status — goes back to
 * the client unchanged. Replicas are tried in turn (each call starts at the next one, so no replica
 * takes them all), moving on only when a request certainly did not run there (not sent, or
 * refused before its handler: `notRunCodes`); a call that may have run there is answered as
 * unknown (a timeout), as any write whose outcome is unknown. It may take as long as the client's
 * deadline allows (`forwardedCallTimeoutMsMax` at most; without a deadline, the host's timeout).
 * An answer too large for the peer link is `forwarded-response-too-large`, and says the call ran.
 *
 * One hop: a forwarded call never forwards again. A replica whose map places the shard elsewhere
 * (it split or moved since this member's map) answers `shard-not-hosted` with the route its map
 * gives: the shard's epoch and replicas. When that epoch is newer than the one the call was routed
 * by, this member tries those replicas next (`forwardedRedirectsMax` times at most), without
 * waiting for its own map to catch up; otherwise the next replica of its own list. When none
 * serves it, the client gets the last such answer (the epoch in its detail) and retries. Not forwarded, refused with
 * `shard-not-hosted`: streams (Watch, LeaseKeepAlive, Observe, WatchPrefix) and waiting calls
 * (Lock, Campaign), whose cancellation the peer channel cannot carry; send those to a replica.
 *
 * The store coordinator's own steps on shards it does not host (a drop's Retire, a split's Split)
 * go the same way as proposals (`propose`; those two commands only): the replica proposes the
 * command and answers what applying it produced (ownership outcomes: plain JSON).
 *
 * Wire (the first byte tells these from leader-queries.ts's JSON, which starts with `{`):
 *   call      0x01 | u16 path length | path | u16 caller length | caller JSON | request bytes
 *   answer    0x00 | response bytes        (a response)
 *             0x01 | status JSON           ({ code, details }: the replica's status, as sent;
 *                                          `elsewhere` { shard, epoch, replicas } added when its
 *                                          map places the shard on other members)
 *   proposal  0x02 | JSON { shard, engine, version, kind, payloadHex }
 *   answer    JSON { outcome }             (refused: the runtime's code, as `runtime.<code>`)
 *   retired?  0x03 | JSON { shard }        (whether a store's drop retired the shard there)
 *   answer    JSON { retired }             (refused `wrong-shard` where it is not hosted)
 */
import * as grpc from '@grpc/grpc-js';
import { type Caller, type EngineCommand, EngineId, OwnershipCommandKind, anonymousCaller } from '../engines/index.js';
import { RuntimeError, type RuntimeErrorCode, ShardElsewhereError } from '../runtime/index.js';
import { type GrpcErrorObject, dkvError, toGrpcError } from '../errors.js';
import { type Incoming, RawResponse } from './grpc-service.js';
import { PeerRequestError, PeerRequestRefusal, peerLimits } from './peer/index.js';
import { assert } from '../../raft/index.js';
import { forwardedAnswerBytesMax, forwardedCallTimeoutMsMax, forwardedPathBytesMax, forwardedCallerBytesMax, forwardedRedirectsMax } from './limits.js';

assert(forwardedAnswerBytesMax <= peerLimits.responsePayloadBytesMax, 'a forwarded call\'s answer must fit a peer answer');
assert(forwardedCallTimeoutMsMax <= peerLimits.requestTimeoutMsMax, 'a forwarded call\'s timeout must be one a peer request may have');

/** The first byte of a forwarded call on the peer request channel. */
export const FORWARDED_CALL_TAG = 0x01;
/** The first byte of a forwarded proposal (a coordinator's step on a shard hosted elsewhere). */
export const FORWARDED_PROPOSAL_TAG = 0x02;

/** The first byte of a question whether a shard is retired (store repair, on a member without it). */
export const RETIRED_QUERY_TAG = 0x03;

/** The services whose unary calls are forwarded (and served when forwarded): those that route by key. */
export const forwardedServices: ReadonlySet<string> = new Set(['etcdserverpb.KV', 'v3lockpb.Lock', 'v3electionpb.Election', 'dkv.v1.KV', 'dkv.v1.Counter', 'dkv.v1.Admin']);

/** Refusals a replica gives before a forwarded call's handler runs: the next replica is tried. */
const notRunCodes: ReadonlySet<string> = new Set(['unknown-method', 'bad-forward', 'not-serving']);

/** The ownership commands a forwarded proposal may carry (a drop's and a split's steps). */
const forwardedProposalKinds: ReadonlySet<number> = new Set([OwnershipCommandKind.Retire, OwnershipCommandKind.Split]);
const ANSWER_RESPONSE = 0x00;
const ANSWER_STATUS = 0x01;

/** Set on an incoming unary call by `Forwarder.wrap`: where to forward it, if its shard is elsewhere. */
const forwardingKey = Symbol('dkv.forwarding');
/** Set on the call a replica makes of a forwarded one: the caller the forwarding member found. */
const forwardedCallerKey = Symbol('dkv.forwardedCaller');
/** Set on the call a replica makes of a forwarded one: told where its map places the call's shard, when not here. */
const elsewhereKey = Symbol('dkv.elsewhere');

/** Where a replica's map places a forwarded call's shard, when not on that replica. */
export interface ForwardedRoute {
  readonly shard: number;
  /** undefined: the replica's map does not list the shard's epoch. */
  readonly epoch: number | undefined;
  readonly replicas: readonly number[];
}

/** The shard a forwarded call was routed to, and its epoch in the map that routed it (undefined: not known). */
export interface RoutedBy {
  readonly shard: number;
  readonly epoch: number | undefined;
}

/** A replica's status for a forwarded call, with the route its map gives when the shard is elsewhere. */
export type ForwardedStatus = GrpcErrorObject & { readonly elsewhere?: ForwardedRoute };

/**
 * A call failing with `error` (its shard is elsewhere): a forwarded call's replica passes the
 * route on with its status (service-common.ts calls this before it answers the failure).
 */
export function noteElsewhere(call: object, error: ShardElsewhereError): void {
  (call as { [elsewhereKey]?: (error: ShardElsewhereError) => void })[elsewhereKey]?.(error);
}

interface Forwarding {
  readonly forwarder: Forwarder;
  readonly path: string;
}

/** Where a call may be forwarded (undefined: not a client's own unary call, or a forwarded one). */
export function forwardingOf(call: object): Forwarding | undefined {
  return (call as { [forwardingKey]?: Forwarding })[forwardingKey];
}

/**
 * The caller of a forwarded call, as the member that forwarded it authenticated it (undefined: a
 * client's own call); `authRevision` -1: checked at the auth revision of the member serving it.
 */
export function forwardedCallerOf(call: object): { readonly user: string; readonly authRevision: number } | undefined {
  return (call as { [forwardedCallerKey]?: { user: string; authRevision: number } })[forwardedCallerKey];
}

/** What the forwarder needs of its node. */
export interface ForwarderHost {
  /** Sends a request to member `to`'s peer request handler. */
  request(to: number, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** The caller of a client's call (throws the client's error for a bad token). */
  caller(call: { readonly metadata: grpc.Metadata }): Caller;
  /** How long a forwarded call may take before it is answered as a timeout. */
  readonly timeoutMs: number;
  /** Whether shard `shard`, hosted here, was retired by a drop (undefined: not hosted here). */
  retiredHere(shard: number): boolean | undefined;
  /** Proposes `command` to shard `shard` here and resolves with the outcome applying it produced. */
  proposeHere(shard: number, command: EngineCommand): Promise<unknown>;
  /** Counts a forwarded call by how it ended (`ok`, `status`, `failed`), a redirect to a newer route, and one answered for a peer. */
  counted?(outcome: 'ok' | 'status' | 'failed' | 'redirected' | 'served'): void;
  /** This member (never a forwarded call's target). */
  readonly memberId?: number;
}

type UnaryHandler = (call: grpc.ServerUnaryCall<Incoming<unknown>, object>, callback: grpc.sendUnaryData<object>) => void;

interface Method {
  readonly handler: UnaryHandler;
  readonly deserialize: (raw: Buffer) => Incoming<unknown>;
  readonly serialize: (value: object) => Buffer;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Forwarder {
  private readonly methods = new Map<string, Method>();
  /** Calls forwarded so far: each starts at the next replica. */
  private turn = 0;

  constructor(private readonly host: ForwarderHost) {}

  /**
   * A service's implementation whose unary calls can be forwarded (and served when forwarded
   * here): each handler is registered by its path, and each incoming call is marked with it.
   */
  wrap(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): grpc.UntypedServiceImplementation {
    const wrapped: grpc.UntypedServiceImplementation = { ...implementation };
    for (const [name, handler] of Object.entries(implementation)) {
      const method = definition[name];
      if (method === undefined || method.requestStream || method.responseStream) continue;
      if (!forwardedServices.has(method.path.slice(1, method.path.lastIndexOf('/')))) continue;
      const original = handler as UnaryHandler;
      this.methods.set(method.path, {
        handler: original,
        deserialize: method.requestDeserialize as (raw: Buffer) => Incoming<unknown>,
        serialize: method.responseSerialize as (value: object) => Buffer,
      });
      const forwarding: Forwarding = { forwarder: this, path: method.path };
      wrapped[name] = ((call: grpc.ServerUnaryCall<Incoming<unknown>, object>, callback: grpc.sendUnaryData<object>) => {
        (call as { [forwardingKey]?: Forwarding })[forwardingKey] = forwarding;
        original(call, callback);
      }) as grpc.UntypedHandleCall;
    }
    return wrapped;
  }

  /**
   * Forwards a client's call to one of `replicas`: resolves with what to answer the client (the
   * replica's response as bytes, or its status); rejects with the client's error when no replica
   * could be asked (`shard-not-hosted`), or with a timeout when one may have run it unanswered.
   */
  forward(forwarding: Forwarding, call: grpc.ServerUnaryCall<Incoming<unknown>, object>, replicas: readonly number[], route?: RoutedBy): Promise<RawResponse | GrpcErrorObject> {
    const deadline = call.getDeadline?.();
    const left = deadline === undefined || deadline === Infinity ? undefined : (deadline instanceof Date ? deadline.getTime() : Number(deadline)) - Date.now();
    return this.call(forwarding.path, call.request.raw, this.host.caller(call), replicas, left, route);
  }

  /**
   * Calls unary method `path` with `request` (its encoded message) as `caller` on one of
   * `replicas` (see `forward`): a part of a Range this node does not host, say. `route`: the
   * shard the call was routed to and its epoch in the map that gave `replicas` (a replica's
   * route for that shard at a newer epoch is followed; without it, none is).
   */
  async call(path: string, request: Uint8Array, caller: Caller, replicas: readonly number[], deadlineMs?: number, route?: RoutedBy): Promise<RawResponse | GrpcErrorObject> {
    const payload = encodeForwardedCall(path, caller, request);
    if (payload.byteLength > peerLimits.requestPayloadBytesMax) {
      throw dkvError('request-too-large', `${payload.byteLength} bytes cannot be forwarded to the shard's replica (at most ${peerLimits.requestPayloadBytesMax}): send it to a member that hosts the shard`);
    }
    if (deadlineMs !== undefined && deadlineMs <= 0) throw dkvError('timeout');
    const deadlineAt = deadlineMs === undefined ? undefined : Date.now() + deadlineMs;
    let lastError: unknown;
    let lastStatus: GrpcErrorObject | undefined;
    const first = this.turn++ % Math.max(1, replicas.length);
    const queue = replicas.map((_, i) => replicas[(first + i) % replicas.length]!);
    const tried = new Set<number>();
    let routeEpoch = route?.epoch;
    let redirects = 0;
    for (let to = queue.shift(); to !== undefined; to = queue.shift()) {
      if (tried.has(to)) continue;
      // Each attempt within what is left of the client's deadline (a later one, after a refusal, has less).
      const left = deadlineAt === undefined ? undefined : deadlineAt - Date.now();
      if (left !== undefined && left <= 0) break;
      const timeoutMs = left === undefined ? this.host.timeoutMs : Math.min(Math.ceil(left), forwardedCallTimeoutMsMax);
      tried.add(to);
      let answer: Uint8Array;
      try {
        answer = await this.host.request(to, payload, timeoutMs);
      } catch (error) {
        lastError = error;
        if (error instanceof PeerRequestError && (error.notDelivered || (error.code === 'refused' && notRunCodes.has(error.refusal?.code ?? '')))) continue;
        this.host.counted?.('failed');
        // It may have run there: the outcome is unknown, as a write's that timed out.
        throw dkvError('timeout');
      }
      const decoded = decodeAnswer(answer);
      if (!(decoded instanceof RawResponse) && decoded.elsewhere !== undefined) {
        // Nothing ran there: its map places the shard elsewhere. A newer map's replicas go first.
        const { elsewhere, ...status } = decoded;
        lastStatus = status;
        const newer = route !== undefined && elsewhere.shard === route.shard && elsewhere.epoch !== undefined && (routeEpoch === undefined || elsewhere.epoch > routeEpoch);
        if (newer && redirects < forwardedRedirectsMax) {
          redirects++;
          routeEpoch = elsewhere.epoch;
          this.host.counted?.('redirected');
          queue.unshift(...elsewhere.replicas.filter((id) => !tried.has(id) && id !== this.host.memberId));
        }
        continue;
      }
      this.host.counted?.(decoded instanceof RawResponse ? 'ok' : 'status');
      return decoded;
    }
    if (lastStatus !== undefined) {
      this.host.counted?.('status');
      return lastStatus;
    }
    this.host.counted?.('failed');
    if (tried.size === 0) throw dkvError('timeout');
    if (lastError instanceof PeerRequestError && lastError.code === 'too-many') throw dkvError('too-many-requests');
    throw dkvError('shard-not-hosted', lastError instanceof Error ? `no replica could be reached (${lastError.message})` : 'no replica could be reached');
  }

  /**
   * Proposes `command` to shard `shard` through one of its `replicas`: resolves with the outcome
   * applying it produced there. A refusal of the replica's runtime is thrown as that RuntimeError;
   * no replica reached is `no-leader` (nothing proposed); one that may have run it unanswered, a
   * timeout.
   */
  async propose(shard: number, replicas: readonly number[], command: EngineCommand): Promise<unknown> {
    const tagged = taggedBytes(FORWARDED_PROPOSAL_TAG, encoder.encode(JSON.stringify({ shard, engine: command.engine, version: command.version, kind: command.kind, payloadHex: Buffer.from(command.payload).toString('hex') })));
    for (const to of replicas) {
      let answer: Uint8Array;
      try {
        answer = await this.host.request(to, tagged, this.host.timeoutMs);
      } catch (error) {
        if (error instanceof PeerRequestError && (error.notDelivered || (error.code === 'refused' && notRunCodes.has(error.refusal?.code ?? '')))) continue;
        if (error instanceof PeerRequestError && error.code === 'refused' && error.refusal?.code.startsWith('runtime.') === true) {
          throw new RuntimeError(error.refusal.code.slice('runtime.'.length) as RuntimeErrorCode, error.refusal.message);
        }
        throw new RuntimeError('timeout', `the proposal to shard ${shard} through member ${to.toString(16)}: ${(error as Error).message}`);
      }
      return (JSON.parse(decoder.decode(answer)) as { outcome: unknown }).outcome;
    }
    // Nothing was proposed: retryable, and not a ShardElsewhereError (the caller's call must not be forwarded whole).
    throw new RuntimeError('no-leader', `no replica of shard ${shard} (member${replicas.length === 1 ? '' : 's'} ${replicas.map((id) => id.toString(16)).join(', ')}) could be reached`);
  }

  /**
   * Whether a drop retired shard `shard`, as the first of `replicas` that answers has applied it
   * (a retirement is never undone; a replica behind may say no, and the next look asks again).
   * Undefined when no replica answered.
   */
  async retired(shard: number, replicas: readonly number[], timeoutMs = this.host.timeoutMs): Promise<boolean | undefined> {
    const tagged = taggedBytes(RETIRED_QUERY_TAG, encoder.encode(JSON.stringify({ shard })));
    for (const to of replicas) {
      try {
        const answer = JSON.parse(decoder.decode(await this.host.request(to, tagged, timeoutMs))) as { retired?: unknown };
        if (typeof answer.retired === 'boolean') return answer.retired;
      } catch {
        // Not hosted there, unreachable, an older build: the next replica.
      }
    }
    return undefined;
  }

  /** Answers whether a shard hosted here is retired (see `retired`). */
  answerRetired(payload: Uint8Array): Uint8Array {
    let shard: unknown;
    try {
      shard = (JSON.parse(decoder.decode(payload.subarray(1))) as { shard?: unknown }).shard;
    } catch {
      throw new PeerRequestRefusal('bad-forward', 'a retired query is not JSON');
    }
    if (typeof shard !== 'number' || !Number.isSafeInteger(shard) || shard < 0) throw new PeerRequestRefusal('bad-forward', 'a retired query names no shard');
    const retired = this.host.retiredHere(shard);
    if (retired === undefined) throw new PeerRequestRefusal('wrong-shard', `shard ${shard} is not hosted here`);
    return encoder.encode(JSON.stringify({ retired }));
  }

  /** Serves a proposal another member forwarded (see `propose`). */
  async answerProposal(payload: Uint8Array): Promise<Uint8Array> {
    let parsed: { shard?: unknown; engine?: unknown; version?: unknown; kind?: unknown; payloadHex?: unknown };
    try {
      parsed = JSON.parse(decoder.decode(payload.subarray(1))) as typeof parsed;
    } catch {
      throw new PeerRequestRefusal('bad-forward', 'a forwarded proposal is not JSON');
    }
    const { shard, engine, version, kind, payloadHex } = parsed;
    const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    if (!isInt(shard) || !isInt(engine) || !isInt(version) || !isInt(kind) || typeof payloadHex !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(payloadHex)) {
      throw new PeerRequestRefusal('bad-forward', 'a forwarded proposal is malformed');
    }
    if (engine !== EngineId.Ownership || !forwardedProposalKinds.has(kind)) throw new PeerRequestRefusal('bad-forward', `a forwarded proposal may carry a Retire or a Split, not engine ${engine} kind ${kind}`);
    try {
      const outcome = await this.host.proposeHere(shard, { engine, version, kind, payload: Buffer.from(payloadHex, 'hex') });
      return encoder.encode(JSON.stringify({ outcome }));
    } catch (error) {
      if (error instanceof RuntimeError) throw new PeerRequestRefusal(`runtime.${error.code}`, error.message);
      throw error;
    }
  }

  /**
   * Serves a call another member forwarded: runs its method's handler as a client's call made
   * here by the caller it names, and answers the response's bytes or the status.
   */
  async answer(payload: Uint8Array): Promise<Uint8Array> {
    const call = decodeForwardedCall(payload);
    const method = this.methods.get(call.path);
    if (method === undefined) throw new PeerRequestRefusal('unknown-method', `no unary method ${call.path.slice(0, 128)} here`);
    let request: Incoming<unknown>;
    try {
      request = method.deserialize(Buffer.from(call.request.buffer, call.request.byteOffset, call.request.byteLength));
    } catch (error) {
      return encodeStatus({ code: grpc.status.INTERNAL, details: `Error deserializing request: ${(error as Error).message}` });
    }
    this.host.counted?.('served');
    let elsewhere: ShardElsewhereError | undefined;
    const served = replicaCall(request, call.caller, (error) => (elsewhere = error));
    const outcome = await new Promise<{ error: grpc.ServiceError | null; value: object | null | undefined }>((resolve) => {
      method.handler(served, ((error, value) => resolve({ error: error as grpc.ServiceError | null, value })) as grpc.sendUnaryData<object>);
    });
    if (outcome.error !== null && outcome.error !== undefined) {
      const route = elsewhere === undefined ? undefined : { shard: elsewhere.shardId, epoch: elsewhere.epoch, replicas: elsewhere.replicas };
      return encodeStatus({ code: outcome.error.code ?? grpc.status.UNKNOWN, details: outcome.error.details ?? outcome.error.message ?? '' }, route);
    }
    const bytes = outcome.value instanceof RawResponse ? outcome.value.bytes : method.serialize(outcome.value ?? {});
    if (bytes.byteLength + 1 > forwardedAnswerBytesMax) {
      return encodeStatus(toGrpcError(dkvError('forwarded-response-too-large', `the call ran on the replica (a write was applied there); its answer of ${bytes.byteLength} bytes is over ${forwardedAnswerBytesMax}`)));
    }
    return taggedBytes(ANSWER_RESPONSE, bytes);
  }
}

/** The call a replica's handler sees for a forwarded one: no metadata, the forwarding member's caller, never cancelled. */
function replicaCall(request: Incoming<unknown>, caller: { user: string; authRevision: number } | undefined, onElsewhere: (error: ShardElsewhereError) => void): grpc.ServerUnaryCall<Incoming<unknown>, object> {
  const call = {
    request,
    metadata: new grpc.Metadata(),
    cancelled: false,
    getPeer: () => 'forwarded',
    getPath: () => '',
    getDeadline: () => Infinity,
    getHost: () => '',
    once: () => call,
    on: () => call,
    removeListener: () => call,
    sendMetadata: () => {},
    [forwardedCallerKey]: caller,
    [elsewhereKey]: onElsewhere,
  };
  return call as unknown as grpc.ServerUnaryCall<Incoming<unknown>, object>;
}

export function encodeForwardedCall(path: string, caller: Caller, request: Uint8Array): Uint8Array {
  const pathBytes = encoder.encode(path);
  // The anonymous caller (auth off) travels as none: the replica finds its own (auth may be on there by now).
  // A caller that may be found again (a simple token's, a certificate's) is checked at the replica's
  // auth revision, as it would be here (authRevision -1); a JWT's at the revision it was issued at.
  const authRevision = caller.again === undefined ? caller.authRevision : -1;
  const callerBytes = encoder.encode(caller === anonymousCaller ? '' : JSON.stringify({ user: caller.user, authRevision }));
  if (pathBytes.byteLength > forwardedPathBytesMax || callerBytes.byteLength > forwardedCallerBytesMax) throw dkvError('malformed-request', 'a forwarded call\'s method or caller is too long');
  const out = new Uint8Array(1 + 2 + pathBytes.byteLength + 2 + callerBytes.byteLength + request.byteLength);
  const view = new DataView(out.buffer);
  out[0] = FORWARDED_CALL_TAG;
  view.setUint16(1, pathBytes.byteLength);
  out.set(pathBytes, 3);
  let at = 3 + pathBytes.byteLength;
  view.setUint16(at, callerBytes.byteLength);
  out.set(callerBytes, at + 2);
  at += 2 + callerBytes.byteLength;
  out.set(request, at);
  return out;
}

export interface ForwardedCall {
  readonly path: string;
  readonly caller: { readonly user: string; readonly authRevision: number } | undefined;
  readonly request: Uint8Array;
}

export function decodeForwardedCall(payload: Uint8Array): ForwardedCall {
  const bad = (why: string): never => {
    throw new PeerRequestRefusal('bad-forward', `a forwarded call ${why}`);
  };
  if (payload.byteLength < 5 || payload[0] !== FORWARDED_CALL_TAG) bad('is too short or not tagged');
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const pathLength = view.getUint16(1);
  if (pathLength > forwardedPathBytesMax || 3 + pathLength + 2 > payload.byteLength) bad('has a method path out of bounds');
  const path = decoder.decode(payload.subarray(3, 3 + pathLength));
  let at = 3 + pathLength;
  const callerLength = view.getUint16(at);
  at += 2;
  if (callerLength > forwardedCallerBytesMax || at + callerLength > payload.byteLength) bad('has a caller out of bounds');
  let caller: { user: string; authRevision: number } | undefined;
  if (callerLength > 0) {
    let parsed: { user?: unknown; authRevision?: unknown };
    try {
      parsed = JSON.parse(decoder.decode(payload.subarray(at, at + callerLength))) as typeof parsed;
    } catch {
      return bad('has a caller that is not JSON');
    }
    if (typeof parsed?.user !== 'string' || typeof parsed.authRevision !== 'number' || !Number.isSafeInteger(parsed.authRevision) || parsed.authRevision < -1) bad('has a malformed caller');
    caller = { user: parsed.user as string, authRevision: parsed.authRevision as number };
  }
  return { path, caller, request: payload.subarray(at + callerLength) };
}

/** `body` after the one byte `tag` that says what it is (every message here starts so). */
function taggedBytes(tag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.byteLength + 1);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

export function encodeStatus(status: GrpcErrorObject, elsewhere?: ForwardedRoute): Uint8Array {
  return taggedBytes(ANSWER_STATUS, encoder.encode(JSON.stringify({ code: status.code, details: status.details, ...(elsewhere === undefined ? {} : { elsewhere }) })));
}

function routeOf(value: unknown): ForwardedRoute | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { shard, epoch, replicas } = value as { shard?: unknown; epoch?: unknown; replicas?: unknown };
  const id = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!id(shard) || (epoch !== undefined && !id(epoch)) || !Array.isArray(replicas) || !replicas.every(id)) return undefined;
  return { shard, epoch, replicas };
}

/** A replica's answer: the response, or its status (with the route it gave, if any; a malformed one is dropped). */
export function decodeAnswer(answer: Uint8Array): RawResponse | ForwardedStatus {
  if (answer[0] === ANSWER_RESPONSE) return new RawResponse(Buffer.from(answer.buffer, answer.byteOffset + 1, answer.byteLength - 1));
  if (answer[0] === ANSWER_STATUS) {
    try {
      const parsed = JSON.parse(decoder.decode(answer.subarray(1))) as { code?: unknown; details?: unknown; elsewhere?: unknown };
      if (typeof parsed.code === 'number' && Number.isInteger(parsed.code) && typeof parsed.details === 'string') {
        const elsewhere = routeOf(parsed.elsewhere);
        return { code: parsed.code, details: parsed.details, ...(elsewhere === undefined ? {} : { elsewhere }) };
      }
    } catch {
      // Answered below.
    }
  }
  return toGrpcError(dkvError('internal'));
}
