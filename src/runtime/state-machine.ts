/**
 * A shard's replicated state machine: a set of engines (KV/MVCC, members, later leases, counters,
 * indexes, auth) behind one interface.
 *
 * - `apply(entry)` opens the command envelope and hands the payload to its engine with an
 *   ApplyContext (index, term, the leader's timestamp made non-decreasing, proposer, request id).
 *   Apply is deterministic: engines read no clock and no randomness, so replicas that apply the
 *   same log hold the same state, and `hash()` proves it.
 * - An entry whose engine or command version this build does not know is NEVER skipped (a skip
 *   would let this replica silently diverge from one that applied it): it is a
 *   `StateMachineHaltError`, which stops the node with a message naming the entry. Proposers and
 *   leaders check commands before they reach the log (`supports`), so this only happens when a
 *   newer build proposed something an older member cannot apply.
 * - The applied index belongs to the state machine; it moves with every entry, configuration
 *   changes and empty entries included, and is part of the snapshot.
 * - A snapshot is one header frame, then each engine's section as frames, then an end frame; it
 *   is restored whole (every engine together) or not at all.
 */
import type { ConfChange, Entry } from '../../raft/index.js';
import { assert } from '../../raft/index.js';
import { crc32c } from '../../storage/index.js';
import { type AppliedChain, CHAIN_START, extendChain } from './applied-chain.js';
import { type ApplyContext, type Caller, type Engine, type EngineCommand, type EngineError, type EngineId, type LeaderContext, UnknownCommandError, sectionChunks } from '../engines/index.js';
import { type CommandEnvelope, LEGACY_ENGINE, decodeEnvelope } from './envelope.js';
import { snapshotFrameBytesMax, snapshotSectionChunkBytesMax, snapshotSectionsMax } from './limits.js';

/** What applying one normal entry produced (undefined for empty entries). */
export interface Applied {
  readonly index: number;
  readonly engine: number;
  readonly proposer: number;
  readonly requestId: number;
  /** The engine's outcome; undefined when the guard refused the command. */
  readonly outcome: unknown;
  /** Why the command was not applied: its caller may not do it (the guard's refusal). */
  readonly refusal?: EngineError;
}

/**
 * Decides, where a command is applied, whether its caller may do it (auth): a refusal is the
 * command's outcome on every replica alike, and the command changes nothing. Only commands that
 * carry a caller (client requests) are checked.
 */
export type CommandGuard = (command: EngineCommand, caller: Caller) => EngineError | undefined;

/** What services may see of a shard's state machine: reads, never apply or restore. */
export interface ShardStateView {
  readonly appliedIndex: number;
  readonly timestampMs: number;
  engine<E extends Engine>(id: number): E;
  hash(): number;
  /** The whole state as snapshot frames, captured now (a backup). */
  snapshot(): Iterator<Uint8Array>;
}

/** The state machine cannot apply a committed entry; the node must stop (never skip it). */
export class StateMachineHaltError extends Error {
  override readonly name = 'StateMachineHaltError';
}

export class SnapshotFormatError extends Error {
  override readonly name = 'SnapshotFormatError';
}

export interface ShardStateMachineOptions {
  readonly engines: readonly Engine[];
  /** The engine that applies format-1 (legacy) commands, if any. */
  readonly legacyEngine?: number;
  /** Keep a digest chain over every applied entry (the simulator's state machine safety check). */
  readonly trackChain?: boolean;
  /** Checks each client command's caller before its engine applies it (none: every command applies). */
  readonly guard?: CommandGuard;
}

// ---- Snapshot framing -----------------------------------------------------------------------
//
//   frame  = kind u8 | engine u8 | engine version u8 | reserved u8 | length u32 (BE) | bytes
//   header (kind 1, engine 0) = magic "DKSM" | format u32 | applied index f64 | time f64 |
//                               chain a u32 | chain b u32 | sections u32
//   section chunk (kind 2) = a chunk of that engine's section
//   end (kind 3, engine 0) = crc32c of every byte before this frame (u32)

const FRAME_HEADER_BYTES = 8;
const KIND_HEADER = 1;
const KIND_SECTION = 2;
const KIND_END = 3;
const SNAPSHOT_MAGIC = 0x44_4b_53_4d; // "DKSM"
const SNAPSHOT_FORMAT = 1;
const HEADER_PAYLOAD_BYTES = 36;

function frame(kind: number, engine: number, version: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  bytes[0] = kind;
  bytes[1] = engine;
  bytes[2] = version;
  new DataView(bytes.buffer).setUint32(4, payload.length);
  bytes.set(payload, FRAME_HEADER_BYTES);
  return bytes;
}

interface DecodedFrame {
  readonly kind: number;
  readonly engine: number;
  readonly version: number;
  readonly payload: Uint8Array;
  /** Offset of the frame in the data. */
  readonly at: number;
}

function* frames(data: Uint8Array): Generator<DecodedFrame> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < data.length) {
    if (at + FRAME_HEADER_BYTES > data.length) throw new SnapshotFormatError('state machine snapshot: a frame header is cut off');
    const length = view.getUint32(at + 4);
    if (length > snapshotFrameBytesMax) throw new SnapshotFormatError(`state machine snapshot: a frame of ${length} bytes is over the limit`);
    const end = at + FRAME_HEADER_BYTES + length;
    if (end > data.length) throw new SnapshotFormatError('state machine snapshot: a frame is cut off');
    yield { kind: data[at]!, engine: data[at + 1]!, version: data[at + 2]!, payload: data.subarray(at + FRAME_HEADER_BYTES, end), at };
    at = end;
  }
}

/** Whether snapshot data is in the state machine format (not an earlier build's bare MVCC frames). */
function isStateMachineSnapshot(data: Uint8Array): boolean {
  if (data.length < FRAME_HEADER_BYTES + 4 || data[0] !== KIND_HEADER) return false;
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(FRAME_HEADER_BYTES) === SNAPSHOT_MAGIC;
}

/** Cuts an engine's section chunks to at most snapshotSectionChunkBytesMax each. */
function* bounded(chunks: Iterator<Uint8Array>): Generator<Uint8Array> {
  for (let next = chunks.next(); next.done !== true; next = chunks.next()) {
    const chunk = next.value;
    for (let at = 0; at < chunk.length || (at === 0 && chunk.length === 0); at += snapshotSectionChunkBytesMax) {
      yield chunk.subarray(at, at + snapshotSectionChunkBytesMax);
      if (chunk.length === 0) break;
    }
  }
}

const noSplits: readonly { readonly child: number; readonly machine: ShardStateMachine | undefined }[] = [];

export class ShardStateMachine implements ShardStateView {
  private readonly engines = new Map<number, Engine>();
  private readonly legacyEngine: Engine | undefined;
  private appliedIndexValue = 0;
  private lastTimestampMs = 0;
  private chainValue: AppliedChain = CHAIN_START;
  private readonly trackChain: boolean;
  private readonly guard: CommandGuard | undefined;
  private splits: Array<{ readonly child: number; readonly machine: ShardStateMachine | undefined }> = [];

  constructor(options: ShardStateMachineOptions) {
    for (const engine of options.engines) {
      assert(engine.id > 0 && engine.id <= 255, `engine ${engine.name} has a bad id ${engine.id}`);
      assert(!this.engines.has(engine.id), `engine id ${engine.id} appears twice`);
      this.engines.set(engine.id, engine);
    }
    assert(this.engines.size <= snapshotSectionsMax, 'too many engines for one snapshot');
    this.legacyEngine = options.legacyEngine === undefined ? undefined : this.engines.get(options.legacyEngine);
    assert(options.legacyEngine === undefined || this.legacyEngine !== undefined, 'the legacy engine must be one of the engines');
    this.trackChain = options.trackChain === true;
    this.guard = options.guard;
  }

  get appliedIndex(): number {
    return this.appliedIndexValue;
  }

  /** The leader's clock as of the last applied command (ms; never decreases). */
  get timestampMs(): number {
    return this.lastTimestampMs;
  }

  /** The digest chain over every applied entry (only with `trackChain`). */
  get chain(): AppliedChain {
    return this.chainValue;
  }

  engine<E extends Engine>(id: number): E {
    const engine = this.engines.get(id);
    assert(engine !== undefined, `no engine ${id} in this state machine`);
    return engine as E;
  }

  engineList(): Engine[] {
    return [...this.engines.values()];
  }

  /** Whether this build can apply `command` (proposers and leaders check before proposing). */
  supports(engine: number, version: number): boolean {
    const found = this.engines.get(engine);
    return found !== undefined && version >= 1 && version <= found.version;
  }

  /**
   * Applies one committed normal entry; entries at or below the applied index are already in the
   * state (a restored snapshot covers them) and are skipped. Returns what the command produced,
   * or undefined for an empty entry (a new leader's no-op) or a skipped one. `decoded`: the
   * payload as this node decoded it before proposing the entry (EngineCommand.decoded).
   */
  apply(entry: Entry, decoded?: unknown): Applied | undefined {
    assert(entry.type === 'normal', 'configuration changes are applied through applyConfChange');
    if (entry.index <= this.appliedIndexValue) return undefined;
    assert(entry.index === this.appliedIndexValue + 1, () => `applied index ${this.appliedIndexValue} then entry ${entry.index}: a gap`);
    if (entry.data.length === 0) {
      this.advance(entry);
      return undefined;
    }
    let envelope: CommandEnvelope;
    try {
      envelope = decodeEnvelope(entry.data);
    } catch (error) {
      throw new StateMachineHaltError(`entry ${entry.index} (term ${entry.term}) cannot be decoded: ${(error as Error).message}`);
    }
    const engine = envelope.engine === LEGACY_ENGINE ? this.legacyEngine : this.engines.get(envelope.engine);
    if (engine === undefined || envelope.version < 1 || envelope.version > engine.version) {
      const what = engine === undefined ? `engine ${envelope.engine}, which this build does not have` : `${engine.name} command version ${envelope.version} (this build applies up to ${engine.version})`;
      throw new StateMachineHaltError(`entry ${entry.index} (term ${entry.term}) is for ${what}: upgrade this member before it rejoins`);
    }
    if (envelope.timestampMs > this.lastTimestampMs) this.lastTimestampMs = envelope.timestampMs;
    const context: ApplyContext = { index: entry.index, term: entry.term, nowMs: this.lastTimestampMs, proposer: envelope.proposer, requestId: envelope.requestId, caller: envelope.caller };
    const refusal = envelope.caller === undefined ? undefined : this.guard?.(envelope, envelope.caller);
    if (refusal !== undefined) {
      this.advance(entry);
      return { index: entry.index, engine: engine.id, proposer: envelope.proposer, requestId: envelope.requestId, outcome: undefined, refusal };
    }
    let outcome: unknown;
    try {
      outcome = engine.apply(decoded === undefined ? envelope : { ...envelope, decoded }, context);
    } catch (error) {
      if (error instanceof UnknownCommandError) throw new StateMachineHaltError(`entry ${entry.index} (term ${entry.term}): ${error.message}: upgrade this member before it rejoins`);
      throw error;
    }
    this.advance(entry);
    return { index: entry.index, engine: engine.id, proposer: envelope.proposer, requestId: envelope.requestId, outcome };
  }

  /** The part of a committed configuration change every engine lets through (see Engine.admitConfChange). */
  admitConfChange(change: ConfChange): ConfChange {
    let admitted = change;
    for (const engine of this.engines.values()) if (engine.admitConfChange !== undefined) admitted = engine.admitConfChange(admitted);
    return admitted;
  }

  /** Applies a committed configuration change (Raft has already taken it); engines record it. */
  applyConfChange(entry: Entry, change: ConfChange, origin: { proposer: number; requestId: number }): void {
    if (entry.index <= this.appliedIndexValue) return;
    assert(entry.index === this.appliedIndexValue + 1, () => `applied index ${this.appliedIndexValue} then entry ${entry.index}: a gap`);
    const context: ApplyContext = { index: entry.index, term: entry.term, nowMs: this.lastTimestampMs, ...origin };
    for (const engine of this.engines.values()) engine.applyConfChange?.(change, context);
    this.advance(entry);
  }

  private advance(entry: Entry): void {
    this.appliedIndexValue = entry.index;
    if (this.trackChain) this.chainValue = extendChain(this.chainValue, entry);
  }

  /**
   * Declares the state the engines hold now to be the state at log index `index`: for a state
   * built outside the log (a cluster restored from a snapshot file). Only on a fresh machine.
   */
  adoptAt(index: number): void {
    assert(this.appliedIndexValue === 0, 'adoptAt on a state machine that applied entries');
    assert(Number.isSafeInteger(index) && index >= 0, `bad index ${index}`);
    this.appliedIndexValue = index;
  }

  /**
   * A split of this shard at `at`, during the apply of its Split command: `into` (a new state
   * machine composed alike) gets this state restricted to `[at, end)` as its state at log index
   * `index`, with this one's leader-stamped time, and this one keeps only the keys below `at`.
   * Every engine takes part (`retainRange`); the child is then handed to the runtime
   * (`takeSplits`), which starts its group. A child this node made already (`splitChildMade`: a
   * restart replaying the parent's log through its Split) is not made again: this one only keeps
   * its own keys.
   */
  splitOff(child: number, makeInto: () => ShardStateMachine, at: Uint8Array, end: Uint8Array | undefined, index: number): void {
    // The child's state is copied before this one keeps only its own keys.
    const into = this.splitChildMade?.(child) === true ? undefined : this.fillSplitChild(makeInto(), at, end, index);
    for (const engine of this.engines.values()) engine.retainRange?.(new Uint8Array(0), at);
    this.splits.push({ child, machine: into });
  }

  /** `into` (a new state machine composed alike) given this state restricted to `[at, end)`, at log index `index`. */
  private fillSplitChild(into: ShardStateMachine, at: Uint8Array, end: Uint8Array | undefined, index: number): ShardStateMachine {
    assert(into.appliedIndexValue === 0, 'splitOff into a state machine that applied entries');
    // Engines with deadlines read the time as they restore.
    into.lastTimestampMs = this.lastTimestampMs;
    // In engine order (the lease engine's restore reads the KV engine's store).
    for (const [id, engine] of this.engines) {
      const target = into.engines.get(id);
      assert(target !== undefined, `the split's state machine has no engine ${id}`);
      if (engine.copyRangeInto !== undefined) {
        engine.copyRangeInto(target, at, end);
        continue;
      }
      target.restore(sectionChunks(engine.snapshot()));
      target.retainRange?.(at, end);
    }
    into.appliedIndexValue = index;
    return into;
  }

  /**
   * Whether the group of a split's child exists on this node already (set by the runtime); its
   * state is then not made again when a replay applies the split.
   */
  splitChildMade: ((child: number) => boolean) | undefined;

  /** The children this state machine split off since the last call (the runtime starts their groups; no machine: made already). */
  takeSplits(): readonly { readonly child: number; readonly machine: ShardStateMachine | undefined }[] {
    if (this.splits.length === 0) return noSplits;
    const taken = this.splits;
    this.splits = [];
    return taken;
  }

  /** A digest of every engine's state (u32); equal on replicas at the same applied index. */
  hash(): number {
    // The leader-stamped time is replicated state too (engines with deadlines read it).
    const parts = new Uint8Array(8 * this.engines.size + 8);
    const view = new DataView(parts.buffer);
    view.setFloat64(0, this.lastTimestampMs);
    let at = 8;
    for (const id of [...this.engines.keys()].sort((a, b) => a - b)) {
      view.setUint32(at, id);
      view.setUint32(at + 4, this.engines.get(id)!.hash() >>> 0);
      at += 8;
    }
    return crc32c(parts);
  }

  /**
   * The whole state as snapshot frames: captured now (engines hand out immutable views), encoded
   * as the iterator is drained, so a large state can be encoded a chunk per turn.
   */
  *snapshot(): Generator<Uint8Array> {
    const header = new Uint8Array(HEADER_PAYLOAD_BYTES);
    const view = new DataView(header.buffer);
    view.setUint32(0, SNAPSHOT_MAGIC);
    view.setUint32(4, SNAPSHOT_FORMAT);
    view.setFloat64(8, this.appliedIndexValue);
    view.setFloat64(16, this.lastTimestampMs);
    view.setUint32(24, this.chainValue.a);
    view.setUint32(28, this.chainValue.b);
    view.setUint32(32, this.engines.size);
    const captured = [...this.engines.values()].map((engine) => ({ engine, version: engine.sectionVersion ?? engine.version, chunks: engine.snapshot() }));
    const crc = new RunningCrc();
    const emit = (bytes: Uint8Array): Uint8Array => {
      crc.update(bytes);
      return bytes;
    };
    yield emit(frame(KIND_HEADER, 0, SNAPSHOT_FORMAT, header));
    for (const { engine, version, chunks } of captured) {
      for (const chunk of bounded(chunks)) yield emit(frame(KIND_SECTION, engine.id, version, chunk));
    }
    const end = new Uint8Array(4);
    new DataView(end.buffer).setUint32(0, crc.value);
    yield frame(KIND_END, 0, SNAPSHOT_FORMAT, end);
  }

  /**
   * Replaces the whole state by a snapshot's at Raft index `index` (empty data: the empty state).
   * Every engine is restored, or, on damaged data, none is (the error names what is wrong).
   */
  restore(data: Uint8Array, index: number): void {
    if (data.length === 0) {
      for (const engine of this.engines.values()) engine.restore([]);
      this.appliedIndexValue = index;
      this.lastTimestampMs = 0;
      this.chainValue = CHAIN_START;
      return;
    }
    if (!isStateMachineSnapshot(data)) {
      this.restoreLegacy(data, index);
      return;
    }
    const sections = new Map<number, Uint8Array[]>();
    let header: { applied: number; time: number; chain: AppliedChain; count: number } | undefined;
    let ended = false;
    const crc = new RunningCrc();
    for (const f of frames(data)) {
      if (ended) throw new SnapshotFormatError('state machine snapshot: data after the end frame');
      if (f.kind === KIND_END) {
        const expected = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength).getUint32(0);
        if (f.payload.length !== 4 || expected !== crc.value) throw new SnapshotFormatError('state machine snapshot: checksum mismatch');
        ended = true;
        continue;
      }
      crc.update(data.subarray(f.at, f.at + FRAME_HEADER_BYTES + f.payload.length));
      if (f.kind === KIND_HEADER) {
        if (header !== undefined || f.payload.length !== HEADER_PAYLOAD_BYTES) throw new SnapshotFormatError('state machine snapshot: bad header');
        const view = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength);
        if (view.getUint32(4) !== SNAPSHOT_FORMAT) throw new SnapshotFormatError(`state machine snapshot: format ${view.getUint32(4)} is not supported`);
        header = {
          applied: view.getFloat64(8),
          time: view.getFloat64(16),
          chain: { a: view.getUint32(24), b: view.getUint32(28) },
          count: view.getUint32(32),
        };
        if (!Number.isSafeInteger(header.applied) || header.applied < 0) throw new SnapshotFormatError('state machine snapshot: bad applied index');
        continue;
      }
      if (f.kind !== KIND_SECTION || header === undefined) throw new SnapshotFormatError(`state machine snapshot: unexpected frame kind ${f.kind}`);
      const engine = this.engines.get(f.engine);
      if (engine === undefined || f.version < 1 || f.version > engine.version) {
        throw new StateMachineHaltError(`snapshot section of engine ${f.engine} version ${f.version} cannot be restored by this build: upgrade this member`);
      }
      let list = sections.get(f.engine);
      if (list === undefined) sections.set(f.engine, (list = []));
      list.push(f.payload);
    }
    if (header === undefined || !ended) throw new SnapshotFormatError('state machine snapshot: truncated');
    if (header.applied !== index) throw new SnapshotFormatError(`state machine snapshot: it covers index ${header.applied}, its metadata says ${index}`);
    if (sections.size > header.count) throw new SnapshotFormatError('state machine snapshot: more sections than its header says');
    for (const engine of this.engines.values()) engine.restore(sections.get(engine.id) ?? []);
    this.appliedIndexValue = header.applied;
    this.lastTimestampMs = header.time;
    this.chainValue = header.chain;
  }

  /**
   * Restores a snapshot another cluster took (a backup file) as the state at `index` of a new
   * log. Engines forget what depended on the old cluster's clocks (lease deadlines start over
   * from the new leader's clock, as etcd's restored leases do).
   */
  restoreAsNew(data: Uint8Array, index: number): void {
    assert(this.appliedIndexValue === 0, 'restoreAsNew on a state machine that applied entries');
    if (!isStateMachineSnapshot(data)) throw new SnapshotFormatError('snapshot data is not in the state machine format');
    const header = data.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + HEADER_PAYLOAD_BYTES);
    const applied = new DataView(header.buffer, header.byteOffset, header.byteLength).getFloat64(8);
    this.restore(data, applied);
    this.appliedIndexValue = index;
    this.chainValue = CHAIN_START;
    for (const engine of this.engines.values()) engine.restoredAsNew?.();
  }

  /** Snapshot data of an earlier build: bare MVCC frames, restored by the legacy engine. */
  private restoreLegacy(data: Uint8Array, index: number): void {
    const engine = this.legacyEngine;
    if (engine === undefined) throw new SnapshotFormatError('snapshot data is not in the state machine format');
    for (const other of this.engines.values()) if (other !== engine) other.restore([]);
    engine.restore([data]);
    this.appliedIndexValue = index;
    this.lastTimestampMs = 0;
    this.chainValue = CHAIN_START;
  }
}

/** crc32c over a sequence of byte strings, as if concatenated. */
class RunningCrc {
  value = 0;

  update(bytes: Uint8Array): void {
    this.value = crc32c(bytes, this.value);
  }
}

export type { AppliedChain, ApplyContext, Caller, Engine, EngineCommand, EngineId, LeaderContext };
export { extendChain, CHAIN_START };
export { snapshotSectionChunkBytesMax };
