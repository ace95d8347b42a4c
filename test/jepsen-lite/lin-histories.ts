/**
 * History builders for the linearizability checker's tests: terse constructors for hand-written
 * histories, and a generator that runs a sequential reference implementation under random
 * concurrency, so every op's call/return window contains the moment it took effect.
 */
import type { HistoryRevision } from '../../jepsen-lite/check/index.js';
import type { KvCompare, KvInput, KvOutput, KvRequest, KvResult, ModelName, Operation } from '../../jepsen-lite/history.js';

const enc = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Hand-written histories

/** An op that returned `output` (process defaults to the id: every op its own client). */
export function ok(id: number, call: number, ret: number, input: unknown, output: unknown, process = id): Operation {
  return { id, process, call, ret, status: 'ok', input, output };
}

/** An op whose client never heard back. */
export function info(id: number, call: number, input: unknown, process = id): Operation {
  return { id, process, call, status: 'info', input, error: 'timeout' };
}

/** An op refused before it could take effect. */
export function failed(id: number, call: number, ret: number, input: unknown, process = id): Operation {
  return { id, process, call, ret, status: 'fail', input, error: 'refused' };
}

// ---------------------------------------------------------------------------------------------
// Generated histories

/** A small deterministic PRNG (mulberry32), so a fast-check seed replays a history exactly. */
export class Random {
  constructor(private seed: number) {}

  next(): number {
    this.seed = (this.seed + 0x6d2b79f5) | 0;
    let t = this.seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** A sequential reference implementation of one model, written apart from the checker's models. */
export interface Reference {
  /** The next input of a client, from what it knows (e.g. the lock token it holds). */
  nextInput(random: Random, memory: Map<string, number>): unknown;
  /** Runs the input at its linearization point; returns the output. */
  apply(input: unknown): unknown;
  /** A client heard `output` for `input`: remember what it needs (a token). */
  learn(memory: Map<string, number>, input: unknown, output: unknown): void;
}

export interface GenerateOptions {
  readonly processes: number;
  /** Ops called over the whole run (roughly: pending ones end it early for their client). */
  readonly operations: number;
  /** Chance that an op in flight is refused (fail) instead of taking effect. */
  readonly failRate: number;
  /** Chance that an op's client crashes (info), before or after the op took effect. */
  readonly infoRate: number;
}

interface Client {
  process: number;
  memory: Map<string, number>;
  phase: 'idle' | 'called' | 'applied';
  id: number;
  call: number;
  input: unknown;
  output: unknown;
}

/**
 * Runs `reference` with `processes` concurrent clients: each step picks a client that calls, takes
 * effect (the linearization point, applied to the reference) or returns. Time advances by 0 or 1
 * per step, so events tie sometimes. Crashed clients come back under a new process number.
 */
export function generateHistory(reference: Reference, random: Random, options: GenerateOptions): Operation[] {
  const history: Operation[] = [];
  let nextProcess = 0;
  const clients: Client[] = Array.from({ length: options.processes }, () => ({
    process: nextProcess++,
    memory: new Map(),
    phase: 'idle' as const,
    id: -1,
    call: 0,
    input: undefined,
    output: undefined,
  }));
  let time = 0;
  let called = 0;
  const record = (client: Client, op: Omit<Operation, 'id' | 'process' | 'call' | 'input'>): void => {
    history[client.id] = { id: client.id, process: client.process, call: client.call, input: client.input, ...op };
  };
  const crash = (client: Client): void => {
    record(client, { status: 'info', error: 'crashed' });
    Object.assign(client, { process: nextProcess++, memory: new Map(), phase: 'idle' });
  };
  while (called < options.operations || clients.some((c) => c.phase !== 'idle')) {
    time += random.below(2);
    const client = random.pick(clients);
    if (client.phase === 'idle') {
      if (called >= options.operations) continue;
      Object.assign(client, { phase: 'called', id: called++, call: time, input: reference.nextInput(random, client.memory) });
      history.push(undefined as unknown as Operation); // filled in when it ends; keeps ids in call order
    } else if (client.phase === 'called') {
      if (random.chance(options.failRate)) {
        record(client, { ret: time, status: 'fail', error: 'refused' });
        client.phase = 'idle';
      } else if (random.chance(options.infoRate)) crash(client);
      else Object.assign(client, { phase: 'applied', output: reference.apply(client.input) });
    } else if (random.chance(options.infoRate)) crash(client);
    else {
      record(client, { ret: time, status: 'ok', output: client.output });
      reference.learn(client.memory, client.input, client.output);
      client.phase = 'idle';
    }
  }
  return history;
}

// ---------------------------------------------------------------------------------------------
// References, one per model (their own code: a bug shared with the checker's models would hide)

const keys = ['a', 'b', 'c'];
const values = ['v0', 'v1', 'v2', 'v3'];

/** `keyNames` defaults to three keys; more keys mean more, smaller partitions. */
export function registerReference(keyNames: readonly string[] = keys): Reference {
  const store = new Map<string, string>();
  return {
    nextInput(random) {
      const key = random.pick(keyNames);
      const roll = random.below(3);
      if (roll === 0) return { f: 'read', key };
      if (roll === 1) return { f: 'write', key, value: random.pick(values) };
      return { f: 'cas', key, from: random.pick(values), to: random.pick(values) };
    },
    apply(input) {
      const op = input as { f: string; key: string; value?: string; from?: string; to?: string };
      if (op.f === 'read') return { f: 'read', value: store.get(op.key) ?? null };
      if (op.f === 'write') {
        store.set(op.key, op.value!);
        return { f: 'write' };
      }
      const succeeded = store.get(op.key) === op.from;
      if (succeeded) store.set(op.key, op.to!);
      return { f: 'cas', succeeded };
    },
    learn() {},
  };
}

export function counterReference(): Reference {
  const counters = new Map<string, number>();
  return {
    nextInput(random) {
      const key = random.pick(keys);
      return random.chance(0.5) ? { f: 'read', key } : { f: 'add', key, delta: 1 + random.below(5) };
    },
    apply(input) {
      const op = input as { f: string; key: string; delta?: number };
      const value = (counters.get(op.key) ?? 0) + (op.delta ?? 0);
      if (op.f === 'read') return { f: 'read', value };
      counters.set(op.key, value);
      return value % 2 === 0 ? { f: 'add', value } : { f: 'add' }; // the new value is sometimes unknown
    },
    learn() {},
  };
}

export function setReference(): Reference {
  const elements = new Set<string>();
  let added = 0;
  return {
    nextInput(random) {
      return random.chance(0.4) ? { f: 'read' } : { f: 'add', value: `e${added++ % 7}` };
    },
    apply(input) {
      const op = input as { f: string; value?: string };
      if (op.f === 'add') {
        elements.add(op.value!);
        return { f: 'add' };
      }
      return { f: 'read', values: [...elements].reverse() };
    },
    learn() {},
  };
}

export function lockReference(): Reference {
  let issued = 0;
  let fence: number | null = null;
  let value: string | null = null;
  return {
    nextInput(random, memory) {
      const token = memory.get('token');
      const roll = random.below(4);
      if (token === undefined) return roll === 0 ? { f: 'read', lock: 'L' } : { f: 'acquire', lock: 'L' };
      if (roll === 0) return { f: 'read', lock: 'L' };
      if (roll === 1) return { f: 'release', lock: 'L', token };
      return { f: 'write', lock: 'L', token, value: random.pick(values) };
    },
    apply(input) {
      const op = input as { f: string; token?: number; value?: string };
      switch (op.f) {
        case 'acquire':
          issued += 1 + (issued % 3); // gaps, like revisions used as tokens
          return { f: 'acquire', token: issued };
        case 'write': {
          const accepted = fence === null || op.token! >= fence;
          if (accepted) [fence, value] = [op.token!, op.value!];
          return { f: 'write', accepted };
        }
        case 'release':
          return { f: 'release' };
        default:
          return { f: 'read', value };
      }
    },
    learn(memory, input, output) {
      const op = input as { f: string };
      if (op.f === 'acquire') memory.set('token', (output as { token: number }).token);
      if (op.f === 'release') memory.delete('token');
    },
  };
}

interface KeyState {
  value: string;
  create: number;
  mod: number;
  version: number;
}

/** etcd's key space, as an independent straight-line implementation. */
export function kvReference(): Reference {
  let revision = 1;
  let store = new Map<string, KeyState>();
  const randomRequest = (random: Random): KvRequest => {
    const key = random.pick(keys);
    const roll = random.below(3);
    return roll === 0 ? { f: 'get', key } : roll === 1 ? { f: 'put', key, value: random.pick(values) } : { f: 'delete', key };
  };
  const randomCompare = (random: Random): KvCompare => {
    const key = random.pick(keys);
    const target = random.pick(['value', 'mod', 'version', 'create'] as const);
    return target === 'value' ? { target, key, value: random.pick(values) } : { target, key, value: random.below(4) };
  };
  return {
    nextInput(random): KvInput {
      if (random.chance(0.7)) return randomRequest(random);
      // distinct write keys per txn, as etcd demands
      const distinct = (requests: KvRequest[]): KvRequest[] =>
        requests.filter((r, i) => r.f === 'get' || !requests.slice(0, i).some((s) => s.f !== 'get' && s.key === r.key));
      return {
        f: 'txn',
        compare: Array.from({ length: random.below(3) }, () => randomCompare(random)),
        success: distinct(Array.from({ length: random.below(3) }, () => randomRequest(random))),
        failure: distinct(Array.from({ length: random.below(3) }, () => randomRequest(random))),
      };
    },
    apply(input): KvOutput {
      const op = input as KvInput;
      const next = new Map(store);
      let changed = false;
      const run = (request: KvRequest): KvResult => {
        const current = next.get(request.key);
        if (request.f === 'get') {
          return { f: 'get', value: current?.value ?? null, modRevision: current?.mod ?? 0, createRevision: current?.create ?? 0, version: current?.version ?? 0 };
        }
        if (request.f === 'delete') {
          if (current === undefined) return { f: 'delete', deleted: 0 };
          next.delete(request.key);
          changed = true;
          return { f: 'delete', deleted: 1 };
        }
        changed = true;
        next.set(request.key, { value: request.value, create: current?.create ?? revision + 1, mod: revision + 1, version: (current?.version ?? 0) + 1 });
        return { f: 'put', prevValue: current?.value ?? null };
      };
      const holds = (c: KvCompare): boolean => {
        const current = store.get(c.key);
        if (c.target === 'value') return current?.value === c.value;
        const field = c.target === 'mod' ? current?.mod : c.target === 'create' ? current?.create : current?.version;
        return (field ?? 0) === c.value;
      };
      let output: KvOutput;
      if (op.f === 'txn') {
        const succeeded = op.compare.every(holds);
        const results = (succeeded ? op.success : op.failure).map(run);
        if (changed) revision++;
        output = { f: 'txn', revision, succeeded, results };
      } else {
        const result = run(op);
        if (changed) revision++;
        output = { ...result, revision };
      }
      store = next;
      return output;
    },
    learn() {},
  };
}

export const references: { readonly [name in ModelName]: () => Reference } = {
  register: () => registerReference(),
  kv: kvReference,
  set: setReference,
  counter: counterReference,
  lock: lockReference,
};

/**
 * Changes one ok read's output to something no run could produce (a value never written, an
 * element never added, a negative count): the history becomes non-linearizable. Returns the
 * mutated op's id, or undefined when there is no ok read.
 */
export function mutateRead(model: ModelName, history: Operation[], random: Random): number | undefined {
  const reads = history.filter((op) => op.status === 'ok' && isRead(model, op.input));
  if (reads.length === 0) return undefined;
  const target = random.pick(reads);
  const output = target.output as Record<string, unknown>;
  const mutated =
    model === 'set'
      ? { ...output, values: [...(output.values as string[]), 'never-added'] }
      : model === 'counter'
        ? { ...output, value: -1 }
        : { ...output, value: 'never-written' };
  history[history.indexOf(target)] = { ...target, output: mutated };
  return target.id;
}

function isRead(model: ModelName, input: unknown): boolean {
  const f = (input as { f: string }).f;
  return model === 'kv' ? f === 'get' : f === 'read';
}

/**
 * etcd's key space with values unique in the run, recording each revision's events as the store
 * commits them (the committed history `checkKvByRevision` reads, keys under `prefix`).
 */
export function recordingKv(prefix: string, keys: readonly string[] = ['a', 'b']): { reference: Reference; committed: HistoryRevision[] } {
  const committed: HistoryRevision[] = [];
  let revision = 1;
  let counter = 0;
  const store = new Map<string, { value: string; create: number; mod: number; version: number }>();
  const request = (random: Random): KvRequest => {
    const key = random.pick(keys);
    const roll = random.below(3);
    return roll === 0 ? { f: 'get', key } : roll === 1 ? { f: 'put', key, value: `v${++counter}` } : { f: 'delete', key };
  };
  const reference: Reference = {
    nextInput(random): KvInput {
      if (random.chance(0.75)) return request(random);
      const key = random.pick(keys);
      return { f: 'txn', compare: [{ target: 'version', key, value: random.below(2) }], success: [{ f: 'put', key, value: `v${++counter}` }], failure: [{ f: 'get', key }] };
    },
    apply(input): KvOutput {
      const op = input as KvInput;
      const events: HistoryRevision['events'][number][] = [];
      const run = (r: KvRequest): KvResult => {
        const current = store.get(r.key);
        if (r.f === 'get') return { f: 'get', value: current?.value ?? null, modRevision: current?.mod ?? 0, createRevision: current?.create ?? 0, version: current?.version ?? 0 };
        if (r.f === 'delete') {
          if (current === undefined) return { f: 'delete', deleted: 0 };
          store.delete(r.key);
          events.push({ type: 'delete', key: enc.encode(prefix + r.key), createRevision: 0, modRevision: revision + 1, version: 0 });
          return { f: 'delete', deleted: 1 };
        }
        const next = { value: r.value, create: current?.create ?? revision + 1, mod: revision + 1, version: (current?.version ?? 0) + 1 };
        store.set(r.key, next);
        events.push({ type: 'put', key: enc.encode(prefix + r.key), value: enc.encode(r.value), createRevision: next.create, modRevision: next.mod, version: next.version });
        return { f: 'put', prevValue: current?.value ?? null };
      };
      let output: KvOutput;
      if (op.f === 'txn') {
        const current = store.get(op.compare[0]!.key);
        const succeeded = (current?.version ?? 0) === op.compare[0]!.value;
        const results = (succeeded ? op.success : op.failure).map(run);
        output = { f: 'txn', revision: revision + (events.length > 0 ? 1 : 0), succeeded, results };
      } else output = { ...run(op), revision: revision + (events.length > 0 ? 1 : 0) };
      if (events.length > 0) committed.push({ revision: ++revision, events });
      return output;
    },
    learn() {},
  };
  return { reference, committed };
}

