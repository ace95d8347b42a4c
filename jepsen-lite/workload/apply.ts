/**
 * Sim mode's stand-in for the KV gRPC service: etcd calls turned into state-machine commands, and
 * applied commands (or MVCC reads) turned into the response the real server would send. It
 * mirrors `src/server/kv-service.ts` (which jepsen-lite must not import): writes become a
 * command carrying the request's protobuf bytes, a read is served from the MVCC store with the
 * store's revision in the header, and a refused command becomes the error the client would get.
 */
import type { Entry } from '../../raft/index.js';
import { kvEngineOf } from '../../src/runtime/index.js';
import {
  type KvApplied,
  KvCommandKind,
  WireValueError,
  type WriteOutcome,
  decodePutCommand,
  decodeTxnCommand,
  deleteRangeToWire,
  kvCommand,
  kvOutcome,
  putToWire,
  rangeFromWire,
  rangeToWire,
  txnFromWire,
  txnToWire,
} from '../../src/engines/kv/index.js';
import { clientError } from '../../src/error-mapping.js';
import { DkvError } from '../../src/errors.js';
import { etcdType, type WireResponseHeader } from '../../src/etcd-proto.js';
import type { EngineCommand, EngineError } from '../../src/engines/index.js';
import { type ShardStateMachine, encodeEnvelope } from '../../src/runtime/index.js';
import { MvccError, type MvccStore, isReadOnlyTxn } from '../../storage/index.js';
import type { EtcdCall, EtcdResponse } from './etcd.js';
import { EtcdCallError } from './errors.js';

const PutRequestType = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequestType = etcdType('etcdserverpb.DeleteRangeRequest');
const TxnRequestType = etcdType('etcdserverpb.TxnRequest');

export type WriteCall = Exclude<EtcdCall, { method: 'range' }>;
export type RangeCall = Extract<EtcdCall, { method: 'range' }>;
/** What the server serves without the log: a Range, or a txn that only reads. */
export type ReadCall = RangeCall | Extract<EtcdCall, { method: 'txn' }>;

/** The header fields a server fills from itself (not from the store). */
export interface HeaderFields {
  readonly clusterId?: number;
  readonly memberId?: number;
  readonly raftTerm?: number;
}

function header(revision: number, fields: HeaderFields): WireResponseHeader {
  return { cluster_id: fields.clusterId ?? 0, member_id: fields.memberId ?? 0, revision, raft_term: fields.raftTerm ?? 0 };
}

/** The request's protobuf bytes, exactly what a gRPC client would have sent. */
export function encodeRequest(call: EtcdCall): Uint8Array {
  const type =
    call.method === 'put'
      ? PutRequestType
      : call.method === 'deleteRange'
        ? DeleteRangeRequestType
        : call.method === 'txn'
          ? TxnRequestType
          : etcdType('etcdserverpb.RangeRequest');
  return type.encode(type.fromObject(call.request as unknown as Record<string, unknown>)).finish();
}

/**
 * The KV engine command a write proposes, as the server's edge builds it: a Put's or Txn's
 * command also carries the request its bytes decode to (the simulator's engines check that the
 * proposer's apply, which uses it, agrees with the bytes every other replica decodes).
 */
export function writeCommand(call: WriteCall): EngineCommand {
  const bytes = encodeRequest(call);
  if (call.method === 'put') return kvCommand(KvCommandKind.Put, bytes, { kind: KvCommandKind.Put, request: decodePutCommand(bytes) });
  if (call.method === 'txn') return kvCommand(KvCommandKind.Txn, bytes, { kind: KvCommandKind.Txn, request: decodeTxnCommand(bytes) });
  return kvCommand(KvCommandKind.DeleteRange, bytes);
}

/** Whether the server proposes the call (a read-only txn is served as a Range is, as etcd does). */
export function isWriteCall(call: EtcdCall): call is WriteCall {
  return call.method !== 'range' && !(call.method === 'txn' && isReadOnlyTxn(txnFromWire(call.request)));
}

/** What the client would receive for a store refusal (the server's one error mapping). */
export function clientErrorOf(error: MvccError | WireValueError | EngineError): EtcdCallError {
  const mapped = clientError(error);
  if (!(mapped instanceof DkvError)) throw error;
  return new EtcdCallError(mapped.grpcStatus, mapped.wireMessage);
}

/** A linearizable Range or read-only txn served from `mvcc` (the caller has done the ReadIndex part). */
export function readResponse(mvcc: MvccStore, call: ReadCall, fields: HeaderFields = {}): EtcdResponse {
  try {
    if (call.method === 'txn') {
      const result = mvcc.readTxn(txnFromWire(call.request));
      const h = header(mvcc.revision, fields);
      return { header: h, ...txnToWire(result, h) } as EtcdResponse;
    }
    const result = mvcc.range(rangeFromWire(call.request));
    return { header: header(mvcc.revision, fields), ...rangeToWire(result) };
  } catch (error) {
    if (error instanceof MvccError || error instanceof WireValueError) throw clientErrorOf(error);
    throw error;
  }
}

/** The response to an applied write, as the server builds it; a refused write throws its EtcdCallError. */
export function writeResponse(outcome: WriteOutcome, fields: HeaderFields = {}): EtcdResponse {
  switch (outcome.kind) {
    case 'put':
      return { header: header(outcome.result.revision, fields), ...putToWire(outcome.result) };
    case 'delete-range':
      return { header: header(outcome.result.revision, fields), ...deleteRangeToWire(outcome.result) };
    case 'txn': {
      const h = header(outcome.result.revision, fields);
      return { header: h, ...txnToWire(outcome.result, h) } as EtcdResponse;
    }
    case 'compaction':
      return { header: header(outcome.revision, fields) };
    case 'error':
      throw clientErrorOf(outcome.error);
  }
}

/**
 * Runs one call against a data shard's state machine directly, as a single-node server with an
 * immediately committed log would: a write is applied as log entry `index`. For tests and for
 * sim-mode code that applies through Raft, use `writeCommand` + `writeResponse` instead.
 */
export function applyCall(
  machine: ShardStateMachine,
  call: EtcdCall,
  entry: { readonly index: number; readonly term?: number },
  fields: HeaderFields = {},
): { response: EtcdResponse; applied?: KvApplied } {
  if (!isWriteCall(call)) return { response: readResponse(kvEngineOf(machine).mvcc, call as ReadCall, fields) };
  // Indexes the caller skipped (its reads) stand for entries without a command.
  for (let index = machine.appliedIndex + 1; index < entry.index; index++) machine.apply({ term: entry.term ?? 1, index, type: 'normal', data: new Uint8Array(0) });
  const command = writeCommand(call);
  const logEntry: Entry = {
    term: entry.term ?? 1,
    index: entry.index,
    type: 'normal',
    data: encodeEnvelope({ ...command, timestampMs: 0, proposer: 0, requestId: entry.index }),
  };
  const result = machine.apply(logEntry);
  if (result === undefined) throw new TypeError(`entry ${entry.index} is at or below the applied index ${machine.appliedIndex}`);
  const applied = kvOutcome(result.outcome);
  return { response: writeResponse(applied.outcome, fields), applied };
}
