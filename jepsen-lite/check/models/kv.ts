/**
 * The etcd key-space model: every key with its value, createRevision, modRevision and version,
 * and the store's revision. Whole-history: revisions couple all keys, so it is never split.
 *
 * As a real etcd answers:
 * - an empty store is at revision 1;
 * - `put` always makes a new revision (revision + 1), even when the value does not change; the
 *   key's createRevision is kept (or set, for a new key), modRevision becomes the new revision,
 *   version goes up by 1 (1 for a new key); `prevValue` is the value before (null if absent);
 * - `delete` of a present key makes a new revision and answers `deleted: 1`; of an absent key it
 *   changes nothing, does not bump the revision and answers `deleted: 0`;
 * - `get` answers value, modRevision, createRevision and version (null and 0s for an absent key);
 * - `txn` compares (all must hold): `value` — an absent key never equals; `mod`, `version`,
 *   `create` — an absent key counts as 0. It then runs the success or the failure requests in
 *   order (a get sees the txn's own earlier writes). If any of them changed something it bumps
 *   the revision by exactly 1, all its writes sharing that revision; otherwise (read-only, or
 *   deletes of absent keys only) the revision stays;
 * - every output's `revision` is the response header's: the new revision after a write, the
 *   current one otherwise. An output must match the model's exactly.
 */
import type { KvCompare, KvInput, KvOutput, KvRequest, KvResult } from '../../history.js';
import {
  type Model,
  fail,
  requireBoolean,
  requireInteger,
  requireNullableString,
  requireRecord,
  requireSameFunction,
  requireString,
  show,
} from './model.js';

export interface KeyMeta {
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
}

export interface KvState {
  readonly revision: number;
  readonly keys: ReadonlyMap<string, KeyMeta>;
  /** The canonical form, computed once per state. */
  readonly key: string;
}

/** etcd's revision before anything is written. */
export const kvInitialRevision = 1;

/** The state with these keys at this revision (its canonical form computed). */
export function kvStateOf(revision: number, keys: ReadonlyMap<string, KeyMeta>): KvState {
  return { revision, keys, key: canonical(revision, keys) };
}

function canonical(revision: number, keys: ReadonlyMap<string, KeyMeta>): string {
  const names = [...keys.keys()].sort();
  const parts: unknown[] = [revision];
  for (const name of names) {
    const meta = keys.get(name)!;
    parts.push(name, meta.value, meta.createRevision, meta.modRevision, meta.version);
  }
  return JSON.stringify(parts);
}

/** One txn (or a lone request) being run: copies the key map on its first write. */
class Execution {
  private keys: Map<string, KeyMeta> | null = null;
  changed = false;

  constructor(readonly state: KvState) {}

  get newRevision(): number {
    return this.state.revision + 1;
  }

  lookup(key: string): KeyMeta | undefined {
    return (this.keys ?? this.state.keys).get(key);
  }

  private writable(): Map<string, KeyMeta> {
    this.keys ??= new Map(this.state.keys);
    this.changed = true;
    return this.keys;
  }

  run(request: KvRequest): KvResult {
    const meta = this.lookup(request.key);
    switch (request.f) {
      case 'get':
        return {
          f: 'get',
          value: meta?.value ?? null,
          modRevision: meta?.modRevision ?? 0,
          createRevision: meta?.createRevision ?? 0,
          version: meta?.version ?? 0,
        };
      case 'put':
        this.writable().set(request.key, {
          value: request.value,
          createRevision: meta?.createRevision ?? this.newRevision,
          modRevision: this.newRevision,
          version: (meta?.version ?? 0) + 1,
        });
        return { f: 'put', prevValue: meta?.value ?? null };
      case 'delete':
        if (meta === undefined) return { f: 'delete', deleted: 0 };
        this.writable().delete(request.key);
        return { f: 'delete', deleted: 1 };
    }
  }

  compare(compare: KvCompare): boolean {
    const meta = this.lookup(compare.key);
    switch (compare.target) {
      case 'value':
        return meta !== undefined && meta.value === compare.value;
      case 'mod':
        return (meta?.modRevision ?? 0) === compare.value;
      case 'version':
        return (meta?.version ?? 0) === compare.value;
      case 'create':
        return (meta?.createRevision ?? 0) === compare.value;
    }
  }

  /** The state after the run, and the response header's revision. */
  finish(): { state: KvState; revision: number } {
    if (!this.changed || this.keys === null) return { state: this.state, revision: this.state.revision };
    const revision = this.newRevision;
    return { state: { revision, keys: this.keys, key: canonical(revision, this.keys) }, revision };
  }
}

/** Runs `input` against `state`: the next state and the exact output etcd would give. */
export function executeKv(state: KvState, input: KvInput): { state: KvState; output: KvOutput } {
  const execution = new Execution(state);
  if (input.f !== 'txn') {
    const result = execution.run(input);
    const done = execution.finish();
    return { state: done.state, output: { ...result, revision: done.revision } };
  }
  const succeeded = input.compare.every((compare) => execution.compare(compare));
  const results = (succeeded ? input.success : input.failure).map((request) => execution.run(request));
  const done = execution.finish();
  return { state: done.state, output: { f: 'txn', revision: done.revision, succeeded, results } };
}

function resultsEqual(a: KvResult, b: KvResult): boolean {
  switch (a.f) {
    case 'get':
      return (
        b.f === 'get' &&
        a.value === b.value &&
        a.modRevision === b.modRevision &&
        a.createRevision === b.createRevision &&
        a.version === b.version
      );
    case 'put':
      return b.f === 'put' && a.prevValue === b.prevValue;
    case 'delete':
      return b.f === 'delete' && a.deleted === b.deleted;
  }
}

/** Compares the fields the contract defines (extra fields a recorder adds are ignored). */
export function kvOutputsEqual(expected: KvOutput, actual: KvOutput): boolean {
  if (expected.revision !== actual.revision) return false;
  if (expected.f !== 'txn' || actual.f !== 'txn') return expected.f !== 'txn' && actual.f !== 'txn' && resultsEqual(expected, actual);
  if (expected.succeeded !== actual.succeeded || expected.results.length !== actual.results.length) return false;
  return expected.results.every((result, i) => resultsEqual(result, actual.results[i]!));
}

/** Whether an answered op changed the store (then its header revision is the one it made). */
export function changedStore(output: KvOutput): boolean {
  const changed = (result: KvResult): boolean => result.f === 'put' || (result.f === 'delete' && result.deleted > 0);
  return output.f === 'txn' ? output.results.some(changed) : changed(output);
}

/** The store's revision just before an answered op took effect. */
function revisionBefore(output: KvOutput): number {
  return changedStore(output) ? output.revision - 1 : output.revision;
}

function isReadOnlyRequest(request: KvRequest): boolean {
  return request.f === 'get';
}

function describeRequest(request: KvRequest): string {
  return request.f === 'put' ? `put ${request.key} ${show(request.value)}` : `${request.f} ${request.key}`;
}

function describeResult(result: KvResult): string {
  switch (result.f) {
    case 'get':
      return result.value === null ? 'absent' : `${show(result.value)} mod ${result.modRevision} create ${result.createRevision} v${result.version}`;
    case 'put':
      return `prev ${show(result.prevValue)}`;
    case 'delete':
      return `deleted ${result.deleted}`;
  }
}

function describeCompare(compare: KvCompare): string {
  return `${compare.target}(${compare.key}) = ${show(compare.value)}`;
}

// ---------------------------------------------------------------------------------------------
// Shape checks

function validateRequest(value: unknown): void {
  const record = requireRecord('kv', value, 'request');
  requireString('kv', record, 'key');
  if (record.f === 'put') requireString('kv', record, 'value');
  else if (record.f !== 'get' && record.f !== 'delete') fail('kv', `unknown request ${show(value)}`);
}

function validateCompare(value: unknown): void {
  const record = requireRecord('kv', value, 'compare');
  requireString('kv', record, 'key');
  if (record.target === 'value') requireString('kv', record, 'value');
  else if (record.target === 'mod' || record.target === 'version' || record.target === 'create') requireInteger('kv', record, 'value', 0);
  else fail('kv', `unknown compare ${show(value)}`);
}

function requireArray(value: unknown, what: string): readonly unknown[] {
  if (!Array.isArray(value)) fail('kv', `${what} is not an array: ${show(value)}`);
  return value;
}

function validateResult(value: unknown, request: Record<string, unknown>): void {
  const record = requireRecord('kv', value, 'result');
  requireSameFunction('kv', request, record);
  if (record.f === 'put') requireNullableString('kv', record, 'prevValue');
  if (record.f === 'delete') requireInteger('kv', record, 'deleted', 0);
  if (record.f === 'get') {
    requireNullableString('kv', record, 'value');
    for (const field of ['modRevision', 'createRevision', 'version']) requireInteger('kv', record, field, 0);
  }
}

function validateInput(input: unknown): Record<string, unknown> {
  const record = requireRecord('kv', input, 'input');
  if (record.f !== 'txn') {
    validateRequest(record);
    return record;
  }
  requireArray(record.compare, 'txn compare').forEach(validateCompare);
  requireArray(record.success, 'txn success').forEach(validateRequest);
  requireArray(record.failure, 'txn failure').forEach(validateRequest);
  return record;
}

function validateOutput(input: Record<string, unknown>, output: unknown): void {
  const record = requireRecord('kv', output, 'output');
  requireSameFunction('kv', input, record);
  requireInteger('kv', record, 'revision', 1);
  if (input.f !== 'txn') {
    validateResult(record, input);
    return;
  }
  const succeeded = requireBoolean('kv', record, 'succeeded');
  const requests = (succeeded ? input.success : input.failure) as readonly unknown[];
  const results = requireArray(record.results, 'txn results');
  if (results.length !== requests.length) fail('kv', `txn output has ${results.length} results for ${requests.length} requests`);
  results.forEach((result, i) => validateResult(result, requests[i] as Record<string, unknown>));
}

// ---------------------------------------------------------------------------------------------

const initialState: KvState = { revision: kvInitialRevision, keys: new Map(), key: canonical(kvInitialRevision, new Map()) };

export const kvModel: Model<KvInput, KvOutput, KvState> = {
  name: 'kv',
  wholeHistory: true,
  partitionKey: () => '',
  initial: () => initialState,
  step(state, input, output) {
    const next = executeKv(state, input);
    if (output !== undefined && !kvOutputsEqual(next.output, output)) return undefined;
    return next.state;
  },
  stateKey: (state) => state.key,
  // the revision only grows: an op that must run at an older revision never can
  hopeless: (state, _input, output) => revisionBefore(output) < state.revision,
  readOnly: (input) =>
    input.f === 'txn' ? input.success.every(isReadOnlyRequest) && input.failure.every(isReadOnlyRequest) : isReadOnlyRequest(input),
  validate(input, output) {
    const record = validateInput(input);
    if (output !== undefined) validateOutput(record, output);
  },
  describe(input, output) {
    const call =
      input.f === 'txn'
        ? `txn if ${input.compare.map(describeCompare).join(' && ') || 'true'} then [${input.success.map(describeRequest).join(', ')}] else [${input.failure.map(describeRequest).join(', ')}]`
        : describeRequest(input);
    if (output === undefined) return `${call} ⇒ ?`;
    const result =
      output.f === 'txn' ? `${output.succeeded ? 'then' : 'else'} [${output.results.map(describeResult).join(', ')}]` : describeResult(output);
    return `${call} ⇒ ${result} @${output.revision}`;
  },
};

