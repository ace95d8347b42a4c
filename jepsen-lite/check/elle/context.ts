/**
 * What the model analyses share: the transactions, which of them are in the graph (node numbers),
 * interned keys, the edge list and the anomaly collector. Validation of the input lives here too:
 * malformed input (not a history any store could produce, e.g. an element appended twice) throws
 * a TypeError, as every checker of jepsen-lite does.
 */
import { AnomalyCollector } from './anomalies.js';
import { EdgeList } from './graph.js';
import { elleTxnsMax } from './limits.js';
import type { ElleModel, ElleTxn } from './types.js';

const statuses = new Set(['ok', 'fail', 'info']);

export class Context {
  /** Per transaction (input index): 1 when it is in the graph. */
  readonly included: Uint8Array;
  /** Per transaction: its node, -1 when not in the graph (set by `assignNodes`). */
  readonly nodeOf: Int32Array;
  /** Per node: the transaction's input index. */
  txnOfNode = new Int32Array(0);
  unknownIncluded = 0;
  readonly keys: string[] = [];
  private readonly keyIds = new Map<string, number>();
  readonly edges = new EdgeList();
  readonly anomalies = new AnomalyCollector();

  constructor(
    readonly model: ElleModel,
    readonly txns: readonly ElleTxn[],
  ) {
    validate(model, txns);
    this.included = new Uint8Array(txns.length);
    this.nodeOf = new Int32Array(txns.length).fill(-1);
    for (let t = 0; t < txns.length; t++) if (txns[t]!.status === 'ok') this.included[t] = 1;
  }

  keyId(key: string): number {
    let id = this.keyIds.get(key);
    if (id === undefined) {
      id = this.keys.length;
      this.keys.push(key);
      this.keyIds.set(key, id);
    }
    return id;
  }

  /** A committed read saw a write of transaction t: an `info` one joins the graph. */
  observed(t: number): void {
    if (this.included[t] === 1 || this.txns[t]!.status !== 'info') return;
    this.included[t] = 1;
    this.unknownIncluded++;
  }

  /** Numbers the transactions in the graph, in input order. Call once inclusion is settled. */
  assignNodes(): void {
    let count = 0;
    for (let t = 0; t < this.txns.length; t++) if (this.included[t] === 1) count++;
    this.txnOfNode = new Int32Array(count);
    let node = 0;
    for (let t = 0; t < this.txns.length; t++) {
      if (this.included[t] !== 1) continue;
      this.nodeOf[t] = node;
      this.txnOfNode[node++] = t;
    }
  }

  /** The history id of a node's transaction. */
  idOfNode(node: number): number {
    return this.txns[this.txnOfNode[node]!]!.id;
  }
}

function validate(model: ElleModel, txns: readonly ElleTxn[]): void {
  if (model !== 'list-append' && model !== 'rw-register') throw new TypeError(`elle checker: unknown model ${String(model)}`);
  if (txns.length > elleTxnsMax) throw new TypeError(`elle checker: ${txns.length} transactions, more than ${elleTxnsMax}`);
  const writeF = model === 'list-append' ? 'append' : 'w';
  const ids = new Set<number>();
  for (const txn of txns) {
    const where = `elle checker: txn ${JSON.stringify(txn.id)}`;
    if (!Number.isSafeInteger(txn.id)) throw new TypeError(`${where}: id is not a safe integer`);
    if (ids.has(txn.id)) throw new TypeError(`${where}: id appears twice`);
    ids.add(txn.id);
    if (!statuses.has(txn.status)) throw new TypeError(`${where}: unknown status ${String(txn.status)}`);
    if (!Number.isFinite(txn.call)) throw new TypeError(`${where}: call time ${txn.call} is not a number`);
    if (txn.ret !== undefined && !(txn.ret >= txn.call)) throw new TypeError(`${where}: returns at ${txn.ret}, before its call at ${txn.call}`);
    if (txn.status === 'ok' && txn.ret === undefined) throw new TypeError(`${where}: status ok without a return time`);
    if (txn.revision !== undefined && !Number.isSafeInteger(txn.revision)) throw new TypeError(`${where}: revision is not a safe integer`);
    if (!Array.isArray(txn.mops)) throw new TypeError(`${where}: mops is not an array`);
    for (const mop of txn.mops) {
      if (typeof mop.key !== 'string') throw new TypeError(`${where}: a micro-op's key is not a string`);
      if (mop.f === 'r') {
        if (mop.modRevision !== undefined && !(Number.isSafeInteger(mop.modRevision) && mop.modRevision >= 0)) {
          throw new TypeError(`${where}: read of ${mop.key} has a bad modRevision`);
        }
        const value = mop.value;
        if (value === undefined) continue;
        const fits = model === 'list-append' ? Array.isArray(value) && value.every((v) => Number.isSafeInteger(v)) : value === null || Number.isSafeInteger(value);
        if (!fits) throw new TypeError(`${where}: read of ${mop.key} has a value that is not a ${model} read`);
      } else if (mop.f === writeF) {
        if (!Number.isSafeInteger(mop.value)) throw new TypeError(`${where}: ${mop.f} of ${mop.key} has a value that is not a safe integer`);
      } else {
        throw new TypeError(`${where}: micro-op ${String((mop as { f: unknown }).f)} is not one of ${model}'s (r, ${writeF})`);
      }
    }
  }
}
