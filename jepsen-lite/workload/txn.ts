/**
 * The transactional workloads, `append` and `rw-register` (Elle's list-append and read-write
 * register), over etcd Txn; checked by `check/elle`.
 *
 * A transaction is 1 to `txnMicroOpsMax` micro-operations on a few keys: reads, and appends of a
 * unique element to a key's list (`append`) or writes of a unique value (`rw-register`). Each
 * runs as ONE etcd Txn, so both modes, both targets and every client run it as they run any kv
 * operation (the history records the Txn, with the micro-operations beside it in `mops`):
 *
 * - `rw-register`: no compare; the success branch holds, in micro-op order, a Range per read and
 *   a Put per write. etcd runs a Txn atomically at one revision, so the reads see the Txn's own
 *   earlier writes and nothing else between.
 * - `append`: etcd has no append, so the client writes the whole list: the Put's value is the
 *   list the client last saw for the key plus the new element, guarded by a compare that the
 *   key's mod revision is still the one it saw (0: absent). A stale view makes the compare fail,
 *   and the failure branch reads every key of the Txn — the client learns the current lists, and
 *   the history gains a committed read-only transaction. A store that applied a Txn without its
 *   compare would overwrite appends it never saw: the lists stop being prefixes of one another.
 *
 * A key takes at most one write per transaction (etcd refuses two Puts of one key in a Txn).
 * After `appendsPerKeyMax` appends a key retires and a fresh one takes its place, so lists stay
 * short and the checker sees many keys' whole lives.
 */
import type { ElleMicroOp, ElleModel, ElleTxn } from '../check/elle/types.js';
import type { KvCompare, KvInput, KvOutput, KvRequest, Operation } from '../history.js';

/** Micro-operations per transaction: 1 to this many. */
export const txnMicroOpsMax = 4;
/** Keys in play at once (default; `--keys`). */
export const txnKeysDefault = 5;
/** Writes (appends or register writes) a key takes before a fresh key replaces it. */
export const appendsPerKeyMax = 32;
/** Percent of micro-operations that read (the rest append or write). */
export const txnReadPercent = 50;

/** A transactional operation as the history records it: the etcd Txn, and the micro-ops it runs. */
export type TxnInput = Extract<KvInput, { f: 'txn' }> & { readonly mops: readonly ElleMicroOp[] };

export function isTxnInput(input: unknown): input is TxnInput {
  return typeof input === 'object' && input !== null && (input as { f?: unknown }).f === 'txn' && Array.isArray((input as { mops?: unknown }).mops);
}

/** A list as it is stored: elements separated by spaces; the empty list is an absent key. */
export function encodeList(list: readonly number[]): string {
  return list.join(' ');
}

/** The list a stored value holds; throws on anything else. */
export function decodeList(value: string | null): number[] {
  if (value === null || value === '') return [];
  return value.split(' ').map((part) => {
    const n = Number(part);
    if (!Number.isSafeInteger(n) || String(n) !== part) throw new TypeError(`not a list of integers: ${JSON.stringify(value)}`);
    return n;
  });
}

function decodeRegister(value: string | null): number | null {
  if (value === null) return null;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || String(n) !== value) throw new TypeError(`not an integer register value: ${JSON.stringify(value)}`);
  return n;
}

interface KeyKnowledge {
  list: readonly number[];
  modRevision: number;
}

/**
 * Draws the next transaction. Deterministic for a given `random` and `observe` sequence. Shared by
 * every client of a run: what one client learns (a key's list and mod revision) the next uses.
 */
export class TxnGenerator {
  private readonly slots: string[];
  private nextKey = 0;
  private nextValue = 0;
  private readonly writes = new Map<string, number>();
  private readonly known = new Map<string, KeyKnowledge>();

  constructor(
    readonly model: ElleModel,
    private readonly random: () => number,
    keys: number = txnKeysDefault,
  ) {
    this.slots = Array.from({ length: keys }, () => this.freshKey());
  }

  private freshKey(): string {
    return `t${this.nextKey++}`;
  }

  private draw(n: number): number {
    const r = this.random();
    if (!(r >= 0 && r < 1)) throw new TypeError(`random() must return a number in [0, 1), got ${r}`);
    return Math.floor(r * n);
  }

  next(): TxnInput {
    const length = 1 + this.draw(txnMicroOpsMax);
    const mops: ElleMicroOp[] = [];
    const written = new Set<string>();
    for (let i = 0; i < length; i++) {
      const slot = this.draw(this.slots.length);
      const key = this.slots[slot]!;
      if (this.draw(100) < txnReadPercent || written.has(key)) {
        mops.push({ f: 'r', key });
        continue;
      }
      written.add(key);
      mops.push({ f: this.model === 'list-append' ? 'append' : 'w', key, value: ++this.nextValue });
      const count = (this.writes.get(key) ?? 0) + 1;
      this.writes.set(key, count);
      if (count >= appendsPerKeyMax) this.slots[slot] = this.freshKey();
    }
    return this.model === 'list-append' ? this.appendTxn(mops) : this.registerTxn(mops);
  }

  private registerTxn(mops: ElleMicroOp[]): TxnInput {
    const success: KvRequest[] = mops.map((mop) => (mop.f === 'r' ? { f: 'get', key: mop.key } : { f: 'put', key: mop.key, value: String(mop.value) }));
    return { f: 'txn', compare: [], success, failure: [], mops };
  }

  private appendTxn(mops: ElleMicroOp[]): TxnInput {
    const compare: KvCompare[] = [];
    const success: KvRequest[] = [];
    const keys: string[] = [];
    for (const mop of mops) {
      if (!keys.includes(mop.key)) keys.push(mop.key);
      if (mop.f === 'r') {
        success.push({ f: 'get', key: mop.key });
        continue;
      }
      const known = this.known.get(mop.key) ?? { list: [], modRevision: 0 };
      compare.push({ target: 'mod', key: mop.key, value: known.modRevision });
      success.push({ f: 'put', key: mop.key, value: encodeList([...known.list, mop.value]) });
    }
    return { f: 'txn', compare, success, failure: keys.map((key) => ({ f: 'get', key })), mops };
  }

  /** What a transaction answered: the lists and mod revisions it saw or made. */
  observe(input: KvInput, output: KvOutput | undefined): void {
    if (this.model !== 'list-append' || output === undefined || input.f !== 'txn' || output.f !== 'txn') return;
    const branch = output.succeeded ? input.success : input.failure;
    branch.forEach((request, i) => {
      const result = output.results[i];
      if (request.f === 'get' && result?.f === 'get') {
        this.known.set(request.key, { list: safeList(result.value), modRevision: result.modRevision });
      } else if (request.f === 'put') {
        this.known.set(request.key, { list: safeList(request.value), modRevision: output.revision });
      }
    });
  }
}

function safeList(value: string | null): number[] {
  try {
    return decodeList(value);
  } catch {
    return [];
  }
}

/** An element (or value) no transaction writes: what an unreadable stored value reads as. */
export const unreadableValue = -1;

/** A read's value for the checker; one the workload cannot have written reads as `unreadableValue` (a garbage read). */
function readValue(model: ElleModel, value: string | null): number[] | number | null {
  try {
    return model === 'list-append' ? decodeList(value) : decodeRegister(value);
  } catch {
    return model === 'list-append' ? [unreadableValue] : unreadableValue;
  }
}

/**
 * The checker's view of a transactional history. A Txn whose compare failed is a committed
 * read-only transaction (its failure branch read every key); the checker sees it as that.
 */
export function elleTxnsOf(model: ElleModel, operations: readonly Operation[]): ElleTxn[] {
  const txns: ElleTxn[] = [];
  for (const op of operations) {
    const input = op.input;
    if (!isTxnInput(input)) continue;
    // Only an acknowledged transaction's return bounds when it took effect: one of unknown outcome
    // may still apply after its client heard an error (real mode records that moment as `ret`).
    const base = { id: op.id, process: op.process, call: op.call, ...(op.ret === undefined || op.status !== 'ok' ? {} : { ret: op.ret }) };
    const output = op.output as KvOutput | undefined;
    if (op.status !== 'ok' || output === undefined || output.f !== 'txn') {
      txns.push({ ...base, status: op.status === 'ok' ? 'info' : op.status, mops: input.mops });
      continue;
    }
    const requests = output.succeeded ? input.success : input.failure;
    const mops: ElleMicroOp[] = [];
    requests.forEach((request, i) => {
      const result = output.results[i];
      if (request.f === 'get' && result?.f === 'get') {
        mops.push({ f: 'r', key: request.key, value: readValue(model, result.value), modRevision: result.modRevision });
      } else if (request.f === 'put') {
        const mop = input.mops[i];
        if (mop === undefined || mop.f === 'r' || mop.key !== request.key) throw new TypeError(`op ${op.id}: its Txn does not match its micro-operations`);
        mops.push(mop);
      }
    });
    txns.push({ ...base, status: 'ok', mops, revision: output.revision });
  }
  return txns;
}
