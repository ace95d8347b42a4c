/**
 * How a shard's state machine is composed of engines: the meta shard holds membership (the meta
 * engine); a data shard holds a store's keys (the KV engine; later leases, counters, indexes).
 * The server and the simulator compose shards the same way.
 */
import { EngineId, KvEngine, MetaEngine } from '../engines/index';
import { ShardStateMachine, type ShardStateView } from './state-machine';

export type ShardKind = 'meta' | 'data';

export interface ComposeOptions {
  /** Keep a digest chain over every applied entry (the simulator's safety check). */
  readonly trackChain?: boolean;
}

/** A new, empty state machine for a shard of `kind`. */
export function composeStateMachine(kind: ShardKind, options: ComposeOptions = {}): ShardStateMachine {
  if (kind === 'meta') return new ShardStateMachine({ engines: [new MetaEngine()], legacyEngine: EngineId.Meta, trackChain: options.trackChain });
  return new ShardStateMachine({ engines: [new KvEngine()], legacyEngine: EngineId.Kv, trackChain: options.trackChain });
}

/** The KV engine of a data shard's state machine. */
export function kvEngineOf(machine: ShardStateView): KvEngine {
  return machine.engine<KvEngine>(EngineId.Kv);
}

/** The meta engine of the meta shard's state machine. */
export function metaEngineOf(machine: ShardStateView): MetaEngine {
  return machine.engine<MetaEngine>(EngineId.Meta);
}
