/**
 * How a shard's state machine is composed of engines: the meta shard holds membership, the stores
 * and the shard map (the meta engine); a data shard holds a store's keys (the KV engine), its
 * leases, per-key TTLs, counters (kept as keys of the store), its alarms, auth state and which
 * keys it serves (the ownership engine); later indexes.
 * The server and the simulator compose shards the same way.
 */
import { AlarmEngine, AuthEngine, CounterEngine, EngineId, KvEngine, LeaseEngine, MetaEngine, OwnershipEngine, TtlEngine, authGuard } from '../engines/index.js';
import { ShardStateMachine, type ShardStateView } from './state-machine.js';

export type ShardKind = 'meta' | 'data';

/**
 * A shard split off another starts with its state as a snapshot at this index and term of its own
 * log (every replica of the parent makes the same one), as TiKV's split regions do; its first
 * entries come after it. Above 1 so no founders log of another group could be mistaken for it.
 */
export const SPLIT_CHILD_INDEX = 5;

export interface ComposeOptions {
  /** Keep a digest chain over every applied entry (the simulator's safety check). */
  readonly trackChain?: boolean;
  /** One election timeout (ms): the grace a new leader gives every lease (default: 10 ticks of 100 ms). */
  readonly electionTimeoutMs?: number;
  /** Compare each decoded request a proposer's command carries with decoding its bytes (the simulator's check). */
  readonly checkDecoded?: boolean;
}

/** The election timeout of the default configuration (10 ticks of 100 ms). */
const electionTimeoutMsDefault = 1000;

/** A new, empty state machine for a shard of `kind`. */
export function composeStateMachine(kind: ShardKind, options: ComposeOptions = {}): ShardStateMachine {
  if (kind === 'meta') return new ShardStateMachine({ engines: [new MetaEngine()], legacyEngine: EngineId.Meta, trackChain: options.trackChain });
  const electionTimeoutMs = options.electionTimeoutMs ?? electionTimeoutMsDefault;
  const kv = new KvEngine();
  // A NOSPACE alarm caps the writes that grow the store (puts, txns with puts, lease grants).
  const alarms = new AlarmEngine();
  const leases = new LeaseEngine({ kv, electionTimeoutMs, cap: alarms });
  // The TTL engine's wheel starts at the state machine's (leader-stamped) time: made below.
  let machine: ShardStateMachine | undefined;
  const ttls = new TtlEngine({ kv, electionTimeoutMs, appliedTimeMs: () => machine?.timestampMs ?? 0 });
  kv.connect({ leaseExists: (id) => leases.has(id), observer: leases, cap: alarms, checkDecoded: options.checkDecoded });
  kv.connect({ observer: ttls });
  const counters = new CounterEngine({ kv, ttl: ttls });
  // The keys the shard serves: writes outside them are refused where they apply. Stores and auth
  // exclude each other, in this one log: no cession while auth is on, no auth while one exists.
  const auth = new AuthEngine({ storesExist: () => ownership.hasCessions });
  // A split makes the child from this state at this index (SPLIT_CHILD_INDEX of the child's log).
  const ownership: OwnershipEngine = new OwnershipEngine(kv, () => auth.enabled, {
    leaseCount: () => leases.size,
    split: (child, at, end) => machine!.splitOff(child, () => composeStateMachine('data', options), at, end, SPLIT_CHILD_INDEX),
  });
  kv.connect({ owner: ownership });
  const guard = authGuard(auth, (id) => leases.get(id)?.keys.values() ?? []);
  // Order matters: engines restore in this order, and the lease engine rebuilds its attachments
  // from the KV engine's restored store (the TTL engine's section stands alone, but its TTLs name
  // the restored keys; the alarm, auth and ownership engines' stand alone).
  machine = new ShardStateMachine({ engines: [kv, leases, ttls, counters, alarms, auth, ownership], legacyEngine: EngineId.Kv, trackChain: options.trackChain, guard });
  return machine;
}

/** The TTL engine of a data shard's state machine. */
export function ttlEngineOf(machine: ShardStateView): TtlEngine {
  return machine.engine<TtlEngine>(EngineId.Ttl);
}

/** The counter engine of a data shard's state machine. */
export function counterEngineOf(machine: ShardStateView): CounterEngine {
  return machine.engine<CounterEngine>(EngineId.Counter);
}

/** The lease engine of a data shard's state machine. */
export function leaseEngineOf(machine: ShardStateView): LeaseEngine {
  return machine.engine<LeaseEngine>(EngineId.Lease);
}

/** The alarm engine of a data shard's state machine. */
export function alarmEngineOf(machine: ShardStateView): AlarmEngine {
  return machine.engine<AlarmEngine>(EngineId.Alarm);
}

/** The auth engine of a data shard's state machine (users, roles, whether auth is on). */
export function authEngineOf(machine: ShardStateView): AuthEngine {
  return machine.engine<AuthEngine>(EngineId.Auth);
}

/** The KV engine of a data shard's state machine. */
export function kvEngineOf(machine: ShardStateView): KvEngine {
  return machine.engine<KvEngine>(EngineId.Kv);
}

/** The ownership engine of a data shard's state machine (the keys it serves). */
export function ownershipEngineOf(machine: ShardStateView): OwnershipEngine {
  return machine.engine<OwnershipEngine>(EngineId.Ownership);
}

/** The meta engine of the meta shard's state machine. */
export function metaEngineOf(machine: ShardStateView): MetaEngine {
  return machine.engine<MetaEngine>(EngineId.Meta);
}
