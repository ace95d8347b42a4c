/**
 * Raft's safety properties, checked incrementally while a simulation runs:
 *
 * - election safety: at most one leader per term;
 * - log matching: an (index, term) pair names one entry, with one predecessor term;
 * - leader completeness: a leader's log holds every entry committed in an earlier term (a leader
 *   of a stale term, elected late by votes cast before a newer term committed more, need not);
 * - state machine safety: every node applies the same entry at each index, in order (checked by
 *   a hash chain over the applied sequence, so restored snapshots are checked too);
 * - read safety: a ReadIndex answer is at or beyond everything committed when the read began.
 *
 * The first violation throws a SafetyViolation, which the simulator reports with its seed.
 */
import type { Entry, Raft } from '../../raft/index.js';
import { type AppliedChain, CHAIN_START, extendChain, hashBytes } from '../../src/runtime/index.js';

export type ViolationKind =
  | 'election-safety'
  | 'log-matching'
  | 'leader-completeness'
  | 'state-machine-safety'
  | 'commit-safety'
  | 'read-safety'
  | 'liveness'
  | 'assertion';

export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
  constructor(
    readonly kind: ViolationKind,
    message: string,
  ) {
    super(`${kind}: ${message}`);
  }
}

/** The applied chain is the state machine's own (src/runtime/applied-chain.ts). */
export type ChainHash = AppliedChain;
export { CHAIN_START, extendChain, hashBytes };

function entryKey(entry: Entry): string {
  const h = hashBytes(0x811c9dc5, entry.data);
  return `${entry.type}:${entry.data.byteLength}:${h.toString(16)}`;
}

interface RecordedEntry {
  readonly key: string;
  readonly prevTerm: number | undefined;
}

export class SafetyChecker {
  private readonly leaderOfTerm = new Map<number, number>();
  private readonly leadersChecked = new Set<string>();
  /** index -> term -> entry identity */
  private readonly entries = new Map<number, Map<number, RecordedEntry>>();
  /** index -> term of the committed entry */
  private readonly committedTerm = new Map<number, number>();
  /** index -> the lowest term of a node seen committing it (it was committed in that term or before). */
  private readonly committedInTerm = new Map<number, number>();
  private readonly committedRecordedTo = new Map<number, number>();
  private readonly appliedChain = new Map<number, ChainHash>();
  maxCommitted = 0;
  leadersElected = 0;

  /** A node became (or is) leader: one leader per term, and it must hold every committed entry. */
  observeLeader(raft: Raft): void {
    const key = `${raft.id}@${raft.term}`;
    if (this.leadersChecked.has(key)) return;
    this.leadersChecked.add(key);
    const other = this.leaderOfTerm.get(raft.term);
    if (other !== undefined && other !== raft.id) {
      throw new SafetyViolation('election-safety', `nodes ${other} and ${raft.id} both leader in term ${raft.term}`);
    }
    this.leaderOfTerm.set(raft.term, raft.id);
    this.leadersElected++;
    // Commits grow in index as terms grow: what earlier terms committed is a prefix.
    let required = this.maxCommitted;
    while (required > 0 && (this.committedInTerm.get(required) ?? 0) >= raft.term) required--;
    const lastIndex = raft.log.lastIndex();
    if (lastIndex < required) {
      throw new SafetyViolation(
        'leader-completeness',
        `leader ${raft.id} of term ${raft.term} has last index ${lastIndex} < ${required}, committed in an earlier term`,
      );
    }
    const first = raft.log.firstIndex();
    for (let index = required; index >= first; index--) {
      const term = this.committedTerm.get(index);
      if (term === undefined) continue;
      const ours = raft.log.maybeTerm(index);
      if (ours !== term) {
        throw new SafetyViolation(
          'leader-completeness',
          `leader ${raft.id} of term ${raft.term} has term ${ours} at index ${index}, committed term is ${term}`,
        );
      }
    }
  }

  /** Entries handed out for persisting: (index, term) must always name the same entry. */
  observeEntries(raft: Raft, entries: readonly Entry[]): void {
    for (const entry of entries) {
      const prevTerm = raft.log.maybeTerm(entry.index - 1);
      let byTerm = this.entries.get(entry.index);
      if (byTerm === undefined) {
        byTerm = new Map();
        this.entries.set(entry.index, byTerm);
      }
      const key = entryKey(entry);
      const seen = byTerm.get(entry.term);
      if (seen === undefined) {
        byTerm.set(entry.term, { key, prevTerm });
        continue;
      }
      if (seen.key !== key) {
        throw new SafetyViolation(
          'log-matching',
          `node ${raft.id} has a different entry at index ${entry.index} term ${entry.term} (${key} vs ${seen.key})`,
        );
      }
      if (seen.prevTerm !== undefined && prevTerm !== undefined && seen.prevTerm !== prevTerm) {
        throw new SafetyViolation(
          'log-matching',
          `node ${raft.id}: entry ${entry.index}/${entry.term} follows term ${prevTerm}, elsewhere term ${seen.prevTerm}`,
        );
      }
    }
  }

  /** Records what a node's commit index says is committed; it must never change. */
  observeCommit(raft: Raft): void {
    const committed = raft.log.committed;
    const from = this.committedRecordedTo.get(raft.id) ?? 0;
    if (committed <= from) return;
    const first = Math.max(from + 1, raft.log.firstIndex());
    for (let index = first; index <= committed; index++) {
      const term = raft.log.maybeTerm(index);
      if (term === undefined) continue;
      const seenIn = this.committedInTerm.get(index);
      if (seenIn === undefined || raft.term < seenIn) this.committedInTerm.set(index, raft.term);
      const known = this.committedTerm.get(index);
      if (known === undefined) this.committedTerm.set(index, term);
      else if (known !== term) {
        throw new SafetyViolation(
          'commit-safety',
          `node ${raft.id} committed term ${term} at index ${index}, but term ${known} was committed there`,
        );
      }
    }
    this.committedRecordedTo.set(raft.id, committed);
    if (committed > this.maxCommitted) this.maxCommitted = committed;
  }

  /** A node restarted: its commit index starts again from what it persisted. */
  forgetNode(id: number): void {
    this.committedRecordedTo.delete(id);
  }

  /** A node applied `entry`, producing `chain`; every node must produce the same chain. */
  observeApply(nodeId: number, previousIndex: number, entry: Entry, chain: ChainHash): void {
    if (entry.index !== previousIndex + 1) {
      throw new SafetyViolation(
        'state-machine-safety',
        `node ${nodeId} applied index ${entry.index} after ${previousIndex} (gap or repeat)`,
      );
    }
    const committed = this.committedTerm.get(entry.index);
    if (committed !== undefined && committed !== entry.term) {
      throw new SafetyViolation(
        'state-machine-safety',
        `node ${nodeId} applied ${entry.index}/${entry.term} but ${entry.index}/${committed} is committed`,
      );
    }
    this.checkChain(nodeId, entry.index, chain, 'applied');
  }

  /** A node restored a snapshot of the applied prefix up to `index`. */
  observeSnapshotRestore(nodeId: number, index: number, chain: ChainHash): void {
    this.checkChain(nodeId, index, chain, 'restored snapshot');
  }

  private checkChain(nodeId: number, index: number, chain: ChainHash, what: string): void {
    const known = this.appliedChain.get(index);
    if (known === undefined) {
      this.appliedChain.set(index, chain);
      return;
    }
    if (known.a !== chain.a || known.b !== chain.b) {
      throw new SafetyViolation(
        'state-machine-safety',
        `node ${nodeId} ${what} a different sequence up to index ${index} than another node`,
      );
    }
  }

  /** A read that began when `requiredIndex` was committed was answered at `index`. */
  observeRead(nodeId: number, index: number, requiredIndex: number): void {
    if (index < requiredIndex) {
      throw new SafetyViolation(
        'read-safety',
        `node ${nodeId} got read index ${index}, but ${requiredIndex} was committed before the read began`,
      );
    }
  }
}
