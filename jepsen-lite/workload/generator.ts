/**
 * Workload generators: the operations concurrent clients issue. Deterministic — the same
 * sequence of `random()` draws (and the same `observe` calls) gives the same inputs — so a sim
 * seed replays exactly.
 *
 * Keys are few (contention is what finds bugs) and logical (`k0`, `k1`, …); the etcd key is the
 * run's prefix + the logical key (see `toEtcdCall`). Every written value is unique in the run
 * (`<process>-<counter>`), which keeps the linearizability search small and makes a violation
 * readable ("read 3-17, but 3-17 was overwritten by 1-20 before the read began").
 */
import type { ElleModel } from '../check/elle/types.js';
import type { KvCompare, KvInput, KvOutput, KvRequest, ModelName, RegisterInput, RegisterOutput } from '../history.js';
import { TxnGenerator, txnKeysDefault } from './txn.js';

export type WorkloadName = 'register' | 'kv' | 'watch' | 'append' | 'rw-register';

export const workloadNames: readonly WorkloadName[] = ['register', 'kv', 'watch', 'append', 'rw-register'];

export function isWorkloadName(name: string): name is WorkloadName {
  return (workloadNames as readonly string[]).includes(name);
}

/**
 * The linearizability model a workload's history is checked against. The transactional
 * workloads' Txns are kv operations too: linearizable Txns are strictly serializable ones.
 */
export function modelOf(workload: WorkloadName): ModelName {
  switch (workload) {
    case 'register':
      return 'register';
    case 'kv':
    case 'watch':
    case 'append':
    case 'rw-register':
      return 'kv';
  }
}

/** The transactional checker's model for a workload (`check/elle`), if it is a transactional one. */
export function elleModelOf(workload: WorkloadName): ElleModel | undefined {
  return workload === 'append' ? 'list-append' : workload === 'rw-register' ? 'rw-register' : undefined;
}

export interface WorkloadOptions {
  /** How many distinct keys the clients fight over. */
  readonly keys: number;
  /** Prepended to every logical key on the wire; keeps a run's keys apart from anything else. */
  readonly keyPrefix: string;
}

/** Keys per workload when not given: the watch workload stays on a small set so streams see everything. */
export const workloadKeysDefault: Readonly<Record<WorkloadName, number>> = { register: 5, kv: 4, watch: 3, append: txnKeysDefault, 'rw-register': txnKeysDefault };

export const workloadDefaults: WorkloadOptions = { keys: workloadKeysDefault.register, keyPrefix: 'jepsen/' };

export const workloadKeysMin = 1;
/** More keys than this and operations rarely collide: the run would test little. */
export const workloadKeysMax = 64;

/** Operation mix of each workload; weights are relative. */
export const registerMix = { read: 50, write: 30, cas: 20 } as const;
export const kvMix = { get: 35, put: 30, delete: 10, txn: 25 } as const;
/** The watch workload is mostly writes: the watch streams are what it checks. */
export const watchMix = { get: 10, put: 45, delete: 15, txn: 30 } as const;
/** Percent of txns that touch a second key (the rest touch one). */
export const txnSecondKeyPercent = 50;

export type WorkloadInput = RegisterInput | KvInput;
export type WorkloadOutput = RegisterOutput | KvOutput;

type Weights<K extends string> = Readonly<Record<K, number>>;

export class Generator {
  readonly workload: WorkloadName;
  readonly options: WorkloadOptions;
  private readonly keyNames: readonly string[];
  private valueCounter = 0;
  /** The last value this generator asked to be written to each key: what a cas or compare expects. */
  private readonly lastValue = new Map<string, string>();
  /** The last modRevision a client saw for each key (fed by `observe`). */
  private readonly lastModRevision = new Map<string, number>();
  /** The transactional workloads' generator. */
  private readonly txn: TxnGenerator | undefined;

  constructor(
    workload: WorkloadName,
    private readonly random: () => number,
    options: Partial<WorkloadOptions> = {},
  ) {
    if (!isWorkloadName(workload)) throw new TypeError(`unknown workload ${String(workload)}`);
    const keys = options.keys ?? workloadKeysDefault[workload];
    if (!Number.isInteger(keys) || keys < workloadKeysMin || keys > workloadKeysMax) {
      throw new TypeError(`keys must be an integer in [${workloadKeysMin}, ${workloadKeysMax}], got ${keys}`);
    }
    this.workload = workload;
    this.options = { keys, keyPrefix: options.keyPrefix ?? workloadDefaults.keyPrefix };
    this.keyNames = Array.from({ length: keys }, (_, i) => `k${i}`);
    const elle = elleModelOf(workload);
    this.txn = elle === undefined ? undefined : new TxnGenerator(elle, random, keys);
  }

  /** The logical keys this generator uses. */
  get keys(): readonly string[] {
    return this.keyNames;
  }

  next(process: number): WorkloadInput {
    if (!Number.isSafeInteger(process) || process < 0) throw new TypeError(`process must be a non-negative integer, got ${process}`);
    switch (this.workload) {
      case 'register':
        return this.nextRegister(process);
      case 'kv':
        return this.nextKv(process, kvMix);
      case 'watch':
        return this.nextKv(process, watchMix);
      case 'append':
      case 'rw-register':
        return this.txn!.next();
    }
  }

  /**
   * Optional feedback: what an operation returned. Lets txns compare against modRevisions the
   * clients actually saw (otherwise they compare only values and absence).
   */
  observe(input: WorkloadInput, output: WorkloadOutput | undefined): void {
    if (output === undefined) return;
    if (this.txn !== undefined) {
      this.txn.observe(input as KvInput, output as KvOutput);
      return;
    }
    if (input.f === 'get' && output.f === 'get') this.noteMod(input.key, output.modRevision);
    else if (input.f === 'put' && output.f === 'put') this.noteMod(input.key, output.revision);
    else if (input.f === 'delete' && output.f === 'delete') this.noteMod(input.key, 0);
    else if (input.f === 'txn' && output.f === 'txn') {
      const branch = output.succeeded ? input.success : input.failure;
      branch.forEach((request, i) => {
        const result = output.results[i];
        if (request.f === 'get' && result?.f === 'get') this.noteMod(request.key, result.modRevision);
        else if (request.f === 'put') this.noteMod(request.key, output.revision);
      });
    }
  }

  // ---- register ----------------------------------------------------------------------------

  private nextRegister(process: number): RegisterInput {
    const key = this.pickKey();
    switch (this.pickWeighted(registerMix)) {
      case 'read':
        return { f: 'read', key };
      case 'write':
        return { f: 'write', key, value: this.freshValue(process, key) };
      case 'cas': {
        // Expect the last value we wrote: often still there under contention, so cas succeeds sometimes.
        const from = this.lastValue.get(key) ?? this.freshValue(process, undefined);
        return { f: 'cas', key, from, to: this.freshValue(process, key) };
      }
    }
  }

  // ---- kv / watch --------------------------------------------------------------------------

  private nextKv(process: number, mix: Weights<'get' | 'put' | 'delete' | 'txn'>): KvInput {
    const kind = this.pickWeighted(mix);
    if (kind === 'txn') return this.nextTxn(process);
    const key = this.pickKey();
    switch (kind) {
      case 'get':
        return { f: 'get', key };
      case 'put':
        return { f: 'put', key, value: this.freshValue(process, key) };
      case 'delete':
        this.lastValue.delete(key);
        return { f: 'delete', key };
    }
  }

  /** A txn on one or two keys: compare the first, write it on success, read it on failure. */
  private nextTxn(process: number): KvInput {
    const first = this.pickKey();
    const second = this.keyNames.length > 1 && this.random() * 100 < txnSecondKeyPercent ? this.pickOtherKey(first) : undefined;
    const compare = [this.pickCompare(first)];
    const success: KvRequest[] = [{ f: 'put', key: first, value: this.freshValue(process, first) }];
    const failure: KvRequest[] = [{ f: 'get', key: first }];
    if (second !== undefined) {
      const onSuccess = this.pickWeighted({ get: 1, put: 1, delete: 1 });
      success.push(this.request(process, onSuccess, second));
      failure.push(this.request(process, this.random() < 0.5 ? 'get' : 'put', second));
    }
    return { f: 'txn', compare, success, failure };
  }

  private request(process: number, f: 'get' | 'put' | 'delete', key: string): KvRequest {
    if (f === 'put') return { f, key, value: this.freshValue(process, key) };
    return { f, key };
  }

  private pickCompare(key: string): KvCompare {
    const kind = this.pickWeighted({ value: 2, mod: 1, absent: 1 });
    const value = this.lastValue.get(key);
    if (kind === 'value' && value !== undefined) return { target: 'value', key, value };
    const mod = this.lastModRevision.get(key);
    if (kind === 'mod' && mod !== undefined) return { target: 'mod', key, value: mod };
    // "The key does not exist": create-if-absent, the most common etcd txn.
    return { target: this.random() < 0.5 ? 'version' : 'create', key, value: 0 };
  }

  // ---- draws ------------------------------------------------------------------------------

  private draw(n: number): number {
    const r = this.random();
    if (!(r >= 0 && r < 1)) throw new TypeError(`random() must return a number in [0, 1), got ${r}`);
    return Math.floor(r * n);
  }

  private pickKey(): string {
    return this.keyNames[this.draw(this.keyNames.length)]!;
  }

  private pickOtherKey(not: string): string {
    const others = this.keyNames.filter((k) => k !== not);
    return others[this.draw(others.length)]!;
  }

  private pickWeighted<K extends string>(weights: Weights<K>): K {
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    let r = this.draw(total);
    for (const [name, w] of entries) {
      if (r < w) return name;
      r -= w;
    }
    throw new TypeError('weights must be positive integers');
  }

  /** A value never written before in this run; remembered as the key's expected value. */
  private freshValue(process: number, key: string | undefined): string {
    const value = `${process}-${++this.valueCounter}`;
    if (key !== undefined) this.lastValue.set(key, value);
    return value;
  }

  private noteMod(key: string, modRevision: number): void {
    if (modRevision > 0) this.lastModRevision.set(key, modRevision);
    else this.lastModRevision.delete(key);
  }
}
