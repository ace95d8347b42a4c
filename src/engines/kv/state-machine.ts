/**
 * The KV shard's replicated state machine: committed log entries applied to the MVCC segment
 * store. `apply` is deterministic — it reads no clock and no randomness, and its outcome
 * (including the errors it returns, such as a duplicate key in a txn) depends only on the entries
 * applied before it — so every replica holds the same state and HashKV proves it.
 */
import type { Entry } from '../../../raft/index';
import {
  type DeleteRangeResult,
  MvccError,
  type MvccEvent,
  MvccStore,
  type PutResult,
  type TxnResult,
} from '../../../storage/index';
import {
  etcdType,
  int64Saturated,
  WireValueError,
  type WireCompactionRequest,
  type WireDeleteRangeRequest,
  type WirePutRequest,
  type WireTxnRequest,
} from '../../etcd-proto';
import { type Command, CommandKind, decodeCommand } from './command';
import { deleteRangeFromWire, putFromWire, txnFromWire } from './convert';

const PutRequestType = etcdType('etcdserverpb.PutRequest');
const DeleteRangeRequestType = etcdType('etcdserverpb.DeleteRangeRequest');
const TxnRequestType = etcdType('etcdserverpb.TxnRequest');
const CompactionRequestType = etcdType('etcdserverpb.CompactionRequest');

export type WriteOutcome =
  | { readonly kind: 'put'; readonly result: PutResult }
  | { readonly kind: 'delete-range'; readonly result: DeleteRangeResult }
  | { readonly kind: 'txn'; readonly result: TxnResult }
  | { readonly kind: 'compaction'; readonly revision: number }
  | { readonly kind: 'error'; readonly error: MvccError | WireValueError };

export interface AppliedCommand {
  readonly index: number;
  readonly proposer: number;
  readonly requestId: number;
  readonly outcome: WriteOutcome;
  /** The changes this command made, in order (empty for reads, compactions and errors). */
  readonly events: readonly MvccEvent[];
}

export class KvStateMachine {
  constructor(readonly mvcc: MvccStore = new MvccStore()) {}

  get appliedIndex(): number {
    return this.mvcc.appliedIndex;
  }

  /**
   * Applies one committed normal entry. Returns what the command did, or undefined for an empty
   * entry (a new leader's no-op). Configuration changes are applied by the shard host.
   */
  apply(entry: Entry): AppliedCommand | undefined {
    // Entries at or below the applied index are already in the state (restored from a snapshot).
    if (entry.index <= this.mvcc.appliedIndex) return undefined;
    try {
      if (entry.data.length === 0) return undefined;
      const command = decodeCommand(entry.data);
      const outcome = this.execute(command);
      const events = outcome.kind === 'put' || outcome.kind === 'delete-range' || outcome.kind === 'txn' ? outcome.result.events : [];
      return { index: entry.index, proposer: command.proposer, requestId: command.requestId, outcome, events };
    } finally {
      this.mvcc.appliedIndex = entry.index;
    }
  }

  private execute(command: Command): WriteOutcome {
    try {
      switch (command.kind) {
        case CommandKind.Put: {
          const put = putFromWire(PutRequestType.decode(command.payload) as unknown as WirePutRequest);
          return { kind: 'put', result: this.mvcc.put(put.key, put.value, put) };
        }
        case CommandKind.DeleteRange: {
          const request = deleteRangeFromWire(DeleteRangeRequestType.decode(command.payload) as unknown as WireDeleteRangeRequest);
          return { kind: 'delete-range', result: this.mvcc.deleteRange(request) };
        }
        case CommandKind.Txn: {
          const request = txnFromWire(TxnRequestType.decode(command.payload) as unknown as WireTxnRequest);
          return { kind: 'txn', result: this.mvcc.txn(request) };
        }
        case CommandKind.Compaction: {
          const request = CompactionRequestType.decode(command.payload) as unknown as WireCompactionRequest;
          // Saturated: past 2^53 still a future revision, below -2^53 still compacted (as etcd).
          this.mvcc.compact(int64Saturated(request.revision));
          return { kind: 'compaction', revision: this.mvcc.revision };
        }
      }
    } catch (error) {
      // Deterministic refusals (the same on every replica) go back to the client; anything else
      // is a bug and must stop the node.
      if (error instanceof MvccError || error instanceof WireValueError) return { kind: 'error', error };
      throw error;
    }
  }
}
