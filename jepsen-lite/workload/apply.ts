/**
 * Sim mode's stand-in for the KV gRPC service: etcd calls turned into state-machine commands, and
 * applied commands (or MVCC reads) turned into the response the real server would send. It
 * mirrors `src/server/kv-service.ts` (which jepsen-lite must not import): writes become a
 * command carrying the request's protobuf bytes, a read is served from the MVCC store with the
 * store's revision in the header, and a refused command becomes the error the client would get.
 */
import type { Entry } from '../../raft/index';
import { CommandKind, encodeCommand } from '../../src/engines/kv/command';
import { WireValueError, deleteRangeToWire, putToWire, rangeFromWire, rangeToWire, txnToWire } from '../../src/engines/kv/convert';
import type { AppliedCommand, KvStateMachine, WriteOutcome } from '../../src/engines/kv/state-machine';
import { etcdType, type WireResponseHeader } from '../../src/etcd-proto';
import { MvccError, type MvccErrorCode, type MvccStore } from '../../storage/index';
import type { EtcdCall, EtcdResponse } from './etcd';
import { EtcdCallError, grpcCode } from './errors';

const PutRequestType = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequestType = etcdType('etcdserverpb.DeleteRangeRequest');
const TxnRequestType = etcdType('etcdserverpb.TxnRequest');

export type WriteCall = Exclude<EtcdCall, { method: 'range' }>;
export type RangeCall = Extract<EtcdCall, { method: 'range' }>;

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

/** The command kind and payload a write proposes (wrap with `encodeCommand` and your proposer/request ids). */
export function writeCommand(call: WriteCall): { kind: CommandKind; payload: Uint8Array } {
  const kind = call.method === 'put' ? CommandKind.Put : call.method === 'deleteRange' ? CommandKind.DeleteRange : CommandKind.Txn;
  return { kind, payload: encodeRequest(call) };
}

export function isWriteCall(call: EtcdCall): call is WriteCall {
  return call.method !== 'range';
}

/**
 * MVCC error codes → the gRPC status the server sends (the messages are etcd's, from the store).
 * etcd prefixes the two revision errors with "etcdserver: " on the wire.
 */
const mvccStatus: Readonly<Record<MvccErrorCode, { code: number; prefix: string }>> = {
  'future-revision': { code: grpcCode.OUT_OF_RANGE, prefix: 'etcdserver: ' },
  compacted: { code: grpcCode.OUT_OF_RANGE, prefix: 'etcdserver: ' },
  'key-not-found': { code: grpcCode.INVALID_ARGUMENT, prefix: '' },
  'too-many-operations': { code: grpcCode.INVALID_ARGUMENT, prefix: '' },
  'duplicate-key': { code: grpcCode.INVALID_ARGUMENT, prefix: '' },
  'empty-key': { code: grpcCode.INVALID_ARGUMENT, prefix: '' },
  'value-provided': { code: grpcCode.INVALID_ARGUMENT, prefix: '' },
  'lease-provided': { code: grpcCode.INVALID_ARGUMENT, prefix: '' },
};

/** What the client would receive for a store refusal. */
export function clientErrorOf(error: MvccError | WireValueError): EtcdCallError {
  if (error instanceof MvccError) {
    const { code, prefix } = mvccStatus[error.code];
    return new EtcdCallError(code, prefix + error.message);
  }
  if (error.code === 'invalid-sort-option') return new EtcdCallError(grpcCode.INVALID_ARGUMENT, 'etcdserver: invalid sort option');
  return new EtcdCallError(grpcCode.INVALID_ARGUMENT, `dkv: invalid argument: ${error.message}`);
}

/** A linearizable Range served from `mvcc` (the caller has done the ReadIndex part). */
export function readResponse(mvcc: MvccStore, call: RangeCall, fields: HeaderFields = {}): EtcdResponse {
  try {
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
 * Runs one call against a state machine directly, as a single-node server with an immediately
 * committed log would: a write is applied as log entry `index`. For tests and for sim-mode code
 * that applies through Raft, use `writeCommand` + `writeResponse` instead.
 */
export function applyCall(
  machine: KvStateMachine,
  call: EtcdCall,
  entry: { readonly index: number; readonly term?: number },
  fields: HeaderFields = {},
): { response: EtcdResponse; applied?: AppliedCommand } {
  if (!isWriteCall(call)) return { response: readResponse(machine.mvcc, call, fields) };
  const { kind, payload } = writeCommand(call);
  const logEntry: Entry = {
    term: entry.term ?? 1,
    index: entry.index,
    type: 'normal',
    data: encodeCommand({ kind, proposer: 0, requestId: entry.index, payload }),
  };
  const applied = machine.apply(logEntry);
  if (applied === undefined) throw new TypeError(`entry ${entry.index} is at or below the applied index ${machine.appliedIndex}`);
  return { response: writeResponse(applied.outcome, fields), applied };
}
