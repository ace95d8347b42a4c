/**
 * The KV engine: etcd's KV writes (put, delete range, txn, compaction) applied to the MVCC segment
 * store. A command's payload is the etcd request exactly as it arrived on the wire (protobuf
 * bytes), so a write is never re-encoded on its way into the log. Apply is deterministic: its
 * outcome, refusals included (a duplicate key in a txn), depends only on the entries before it.
 */
import { type ConfChange, assert } from '../../../raft/index.js';
import {
  type DeleteRangeResult,
  MvccError,
  type MvccEvent,
  MvccStore,
  type PutRequest,
  type PutResult,
  type TxnRequest,
  type TxnResult,
  encodeSnapshot,
  restoreSnapshotPieces,
  type WriteChecks,
} from '../../../storage/index.js';
import {
  etcdType,
  int64Saturated,
  type WireCompactionRequest,
  type WireDeleteRangeRequest,
  type WirePutRequest,
  type WireTxnRequest,
} from '../../etcd-proto.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineError, EngineId, type KeyOwner, UnknownCommandError, ownsEveryKey, uncapped, type WriteCap } from '../engine.js';
import { WireValueError, deleteRangeFromWire, putFromWire, txnFromWire } from './convert.js';

/** The KV engine's operation codes (in every KV log entry: never renumber). */
export const KvCommandKind = {
  Put: 1,
  DeleteRange: 2,
  Txn: 3,
  Compaction: 4,
} as const;
export type KvCommandKind = (typeof KvCommandKind)[keyof typeof KvCommandKind];

/** The KV command format this build writes and applies. */
export const KV_COMMAND_VERSION = 1;

const PutRequestType = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequestType = etcdType('etcdserverpb.DeleteRangeRequest');
const TxnRequestType = etcdType('etcdserverpb.TxnRequest');
const CompactionRequestType = etcdType('etcdserverpb.CompactionRequest');

export type WriteOutcome =
  | { readonly kind: 'put'; readonly result: PutResult }
  | { readonly kind: 'delete-range'; readonly result: DeleteRangeResult }
  | { readonly kind: 'txn'; readonly result: TxnResult }
  | { readonly kind: 'compaction'; readonly revision: number }
  | { readonly kind: 'error'; readonly error: MvccError | WireValueError | EngineError };

/** What applying a KV command produced. */
export interface KvApplied {
  readonly outcome: WriteOutcome;
  /** The changes it made, in order (empty for compactions and refusals). */
  readonly events: readonly MvccEvent[];
}

/** What the proposer's edge decoded a Put's or a Txn's bytes to (`EngineCommand.decoded`). */
export type KvDecoded = { readonly kind: typeof KvCommandKind.Put; readonly request: PutRequest } | { readonly kind: typeof KvCommandKind.Txn; readonly request: TxnRequest };

/**
 * A KV command carrying an etcd request's protobuf bytes, and optionally what they decode to:
 * `putFromWire` or `txnFromWire` of the protobuf decoding of exactly these bytes, never of bytes
 * rebuilt from them. This node's apply then uses it instead of decoding them again; its key and
 * value views share the bytes' memory, which must not change until the command is applied.
 */
export function kvCommand(kind: KvCommandKind, request: Uint8Array, decoded?: KvDecoded): EngineCommand {
  assert(decoded === undefined || decoded.kind === kind, 'a decoded request of another kind');
  const command = { engine: EngineId.Kv, version: KV_COMMAND_VERSION, kind, payload: request };
  return decoded === undefined ? command : { ...command, decoded };
}

/**
 * A request as JSON with its bytes in hex and its int64s as text: two equal requests give the same
 * text. (A Buffer's own toJSON runs before the replacer sees it: the holder still has the bytes.)
 */
function canonicalJson(request: unknown): string {
  return JSON.stringify(request, function (this: Record<string, unknown>, key: string, value: unknown) {
    const original = this[key];
    if (original instanceof Uint8Array) return Buffer.from(original).toString('hex');
    return typeof value === 'bigint' ? `${value}n` : value;
  });
}

/** What a Put command's bytes decode to: what its apply executes. */
export function decodePutCommand(payload: Uint8Array): PutRequest {
  return putFromWire(PutRequestType.decode(payload) as unknown as WirePutRequest);
}

/** What a Txn command's bytes decode to: what its apply executes. */
export function decodeTxnCommand(payload: Uint8Array): TxnRequest {
  return txnFromWire(TxnRequestType.decode(payload) as unknown as WireTxnRequest);
}

const commandDecoders: { readonly [K in KvDecoded['kind']]: (payload: Uint8Array) => KvDecodedRequest[K] } = {
  [KvCommandKind.Put]: decodePutCommand,
  [KvCommandKind.Txn]: decodeTxnCommand,
};

interface KvDecodedRequest {
  [KvCommandKind.Put]: PutRequest;
  [KvCommandKind.Txn]: TxnRequest;
}

/** An engine that follows every write to the store (lease attachments, TTL bookkeeping). */
export interface KvWriteObserver {
  written(events: readonly MvccEvent[]): void;
}

export class KvEngine implements Engine {
  readonly id = EngineId.Kv;
  readonly name = 'kv';
  readonly version = KV_COMMAND_VERSION;
  private readonly observers: KvWriteObserver[] = [];
  private checks: WriteChecks = { leaseExists: () => false };
  private cap: WriteCap = uncapped;
  private owner: KeyOwner = ownsEveryKey;
  /** Simulator and tests: each decoded request a command carries is compared with decoding its bytes. */
  private checkDecoded = false;

  constructor(public mvcc: MvccStore = new MvccStore()) {}

  /**
   * Joins the engines of one state machine: `leaseExists` answers for the lease engine (without
   * one, every lease is unknown, as etcd answers), and observers see every write's events.
   */
  connect(options: {
    readonly leaseExists?: (lease: bigint) => boolean;
    readonly observer?: KvWriteObserver;
    readonly cap?: WriteCap;
    readonly owner?: KeyOwner;
    readonly checkDecoded?: boolean;
  }): void {
    if (options.leaseExists !== undefined) this.checks = { leaseExists: options.leaseExists };
    if (options.checkDecoded !== undefined) this.checkDecoded = options.checkDecoded;
    if (options.cap !== undefined) this.cap = options.cap;
    if (options.owner !== undefined) this.owner = options.owner;
    if (options.observer !== undefined) this.observers.push(options.observer);
  }

  /** Whether writes that grow the store are refused (a NOSPACE alarm): engines that write through this one ask. */
  get capped(): boolean {
    return this.cap.capped;
  }

  /** Whether every key of the range is this shard's (the ownership engine): etcd's range conventions. */
  owns(key: Uint8Array, rangeEnd?: Uint8Array): boolean {
    return this.owner.owns(key, rangeEnd);
  }

  /** Whether every key and range a txn names (compares, operations, nested txns) is this shard's. */
  ownsTxn(request: TxnRequest): boolean {
    if (!request.compare.every((c) => this.owner.owns(c.key, c.rangeEnd))) return false;
    const ops = (list: TxnRequest['success']): boolean =>
      list.every((op) => {
        switch (op.type) {
          case 'range':
            return this.owner.owns(op.range.key, op.range.rangeEnd);
          case 'put':
            return this.owner.owns(op.put.key);
          case 'deleteRange':
            return this.owner.owns(op.deleteRange.key, op.deleteRange.rangeEnd);
          case 'txn':
            return this.ownsTxn(op.txn);
        }
      });
    return ops(request.success) && ops(request.failure);
  }

  /** Every write to the store goes through here once applied (engines that write call it too). */
  written(events: readonly MvccEvent[]): void {
    if (events.length === 0) return;
    for (const observer of this.observers) observer.written(events);
  }

  /**
   * A put on behalf of another engine (the TTL engine's dkv.v1 writes): with this engine's checks
   * (the lease must exist), its events reported to every observer. Throws MvccError on a refusal,
   * before anything changed.
   */
  putFor(request: PutRequest): PutResult {
    const result = this.mvcc.put(request.key, request.value, request, this.checks);
    this.written(result.events);
    return result;
  }

  /** A txn on behalf of another engine, as `putFor`. */
  txnFor(request: TxnRequest): TxnResult {
    const result = this.mvcc.txn(request, this.checks);
    this.written(result.events);
    return result;
  }

  apply(command: EngineCommand, _context: ApplyContext): KvApplied {
    const outcome = this.execute(command);
    const events = outcome.kind === 'put' || outcome.kind === 'delete-range' || outcome.kind === 'txn' ? outcome.result.events : [];
    this.written(events);
    return { outcome, events };
  }

  /**
   * The request a Put or Txn command carries decoded (its proposer's own apply), else what its
   * bytes decode to. With `checkDecoded`, both, which must be the same request.
   */
  private requestOf<K extends KvDecoded['kind']>(command: EngineCommand, kind: K): KvDecodedRequest[K] {
    const decode = commandDecoders[kind] as (payload: Uint8Array) => KvDecodedRequest[K];
    const decoded = command.decoded as KvDecoded | undefined;
    if (decoded === undefined) return decode(command.payload);
    assert(decoded.kind === kind, 'a command carries a decoded request of another kind');
    const request = decoded.request as KvDecodedRequest[K];
    if (this.checkDecoded) assert(canonicalJson(request) === canonicalJson(decode(command.payload)), "a command's decoded request is not what its bytes decode to");
    return request;
  }

  private execute(command: EngineCommand): WriteOutcome {
    const { kind, payload } = command;
    try {
      switch (kind) {
        case KvCommandKind.Put: {
          const put = this.requestOf(command, KvCommandKind.Put);
          if (!this.owner.owns(put.key)) return notOwned();
          if (this.cap.capped) return { kind: 'error', error: new EngineError('no-space') };
          return { kind: 'put', result: this.mvcc.put(put.key, put.value, put, this.checks) };
        }
        case KvCommandKind.DeleteRange: {
          const request = deleteRangeFromWire(DeleteRangeRequestType.decode(payload) as unknown as WireDeleteRangeRequest);
          if (!this.owner.owns(request.key, request.rangeEnd)) return notOwned();
          return { kind: 'delete-range', result: this.mvcc.deleteRange(request) };
        }
        case KvCommandKind.Txn: {
          const request = this.requestOf(command, KvCommandKind.Txn);
          if (!this.ownsTxn(request)) return notOwned();
          // As etcd: a txn is refused when either branch could put (its quota cost is not zero).
          if (this.cap.capped && txnPuts(request)) return { kind: 'error', error: new EngineError('no-space') };
          return { kind: 'txn', result: this.mvcc.txn(request, this.checks) };
        }
        case KvCommandKind.Compaction: {
          const request = CompactionRequestType.decode(payload) as unknown as WireCompactionRequest;
          // Saturated: past 2^53 still a future revision, below -2^53 still compacted (as etcd).
          this.mvcc.compact(int64Saturated(request.revision));
          return { kind: 'compaction', revision: this.mvcc.revision };
        }
        default:
          // A build with more KV operations under the same version: stop, never diverge.
          throw new UnknownCommandError(`unknown KV command kind ${kind}`);
      }
    } catch (error) {
      // Deterministic refusals (the same on every replica) go back to the client; anything else
      // is a bug and must stop the node.
      if (error instanceof MvccError || error instanceof WireValueError) return { kind: 'error', error };
      throw error;
    }
  }

  /**
   * Keeps only the keys in [start, end) (start empty: from the first key; end undefined: no end),
   * each with its whole retained history, at the same revisions: one side of a shard split. The
   * store is replaced by a copy of that range (`MvccStore.retained`), so the rest is freed.
   * O(kept versions + revisions since the compact revision).
   */
  retainRange(start: Uint8Array, end: Uint8Array | undefined): void {
    this.mvcc = this.mvcc.retained(start, end);
  }

  copyRangeInto(target: Engine, start: Uint8Array, end: Uint8Array | undefined): void {
    (target as KvEngine).mvcc = this.mvcc.retained(start, end);
  }

  snapshot(): Iterator<Uint8Array> {
    return encodeSnapshot(this.mvcc);
  }

  restore(chunks: readonly Uint8Array[]): void {
    // Chunks written by `snapshot()` are whole MVCC frames; an earlier build's snapshot arrives as
    // one chunk of concatenated frames.
    this.mvcc = chunks.length === 0 ? new MvccStore() : restoreSnapshotPieces(chunks);
  }

  hash(): number {
    return this.mvcc.hashKV(0).hash;
  }
}

/** Why a shard refuses a key it does not serve: said to the client after the stable message. */
export const NOT_OWNED_DETAIL = 'the shard that got the request does not serve its keys now (a store on their prefix is being created or dropped, or the node routed it with a shard map behind the cluster\'s); retry';

/** A write that touches a key this shard does not serve (its store's map changed: route it again). */
export function notOwned(): { kind: 'error'; error: EngineError } {
  return { kind: 'error', error: new EngineError('not-owned', NOT_OWNED_DETAIL) };
}

/** Whether a put appears in either branch of `request`, nested txns included. */
export function txnPuts(request: TxnRequest): boolean {
  const puts = (ops: TxnRequest['success']): boolean => ops.some((op) => op.type === 'put' || (op.type === 'txn' && txnPuts(op.txn)));
  return puts(request.success) || puts(request.failure);
}

/** The KV outcome of an Applied from the KV engine. */
export function kvOutcome(outcome: unknown): KvApplied {
  return outcome as KvApplied;
}
