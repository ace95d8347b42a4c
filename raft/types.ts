/**
 * The data types of the Raft core: entries, messages, hard/soft state, configuration and
 * snapshots. They follow etcd-io/raft's raftpb closely so the transport and storage layers can map
 * them one to one.
 *
 * Terms, indexes and node ids are plain numbers (exact up to 2^53); `NONE` (0) means "no node".
 */

export const NONE = 0;

export type EntryType = 'normal' | 'conf-change';

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** The command, opaque to Raft. An empty normal entry is what a new leader appends. */
  readonly data: Uint8Array;
}

export interface HardState {
  readonly term: number;
  readonly vote: number;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === NONE && hs.commit === 0;
}

export function hardStatesEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** The membership of a group, as stored with snapshots and returned by `applyConfChange`. */
export interface ConfState {
  /** Voters of the incoming (or only) configuration. */
  readonly voters: readonly number[];
  /** Voters of the outgoing configuration; non-empty only while in a joint configuration. */
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
  /** Voters of the outgoing configuration that become learners when the joint state is left. */
  readonly learnersNext: readonly number[];
  /** Whether the joint configuration is left automatically once it is applied. */
  readonly autoLeave: boolean;
}

export const EMPTY_CONF_STATE: ConfState = Object.freeze({
  voters: [],
  votersOutgoing: [],
  learners: [],
  learnersNext: [],
  autoLeave: false,
});

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /**
   * The state machine image. The core never looks inside; large stores keep their image outside
   * and put a handle here (the transport streams it in chunks).
   */
  readonly data: Uint8Array;
}

export const EMPTY_SNAPSHOT: Snapshot = Object.freeze({
  metadata: Object.freeze({ index: 0, term: 0, confState: EMPTY_CONF_STATE }),
  data: new Uint8Array(0),
});

export function isEmptySnapshot(snapshot: Snapshot | undefined): boolean {
  return snapshot === undefined || snapshot.metadata.index === 0;
}

export type MessageType =
  // Local messages: never sent over the network.
  | 'MsgHup' // start an election
  | 'MsgBeat' // leader: send heartbeats
  | 'MsgCheckQuorum' // leader: step down unless a quorum was recently active
  | 'MsgUnreachable' // leader: a follower could not be reached
  | 'MsgSnapStatus' // leader: a snapshot was (or was not) delivered
  // Messages between nodes.
  | 'MsgProp'
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgSnap'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgTransferLeader'
  | 'MsgTimeoutNow'
  | 'MsgReadIndex'
  | 'MsgReadIndexResp'
  // A node that refused a proposal forwarded to it tells the proposer, with the entries and the
  // reason (in rejectHint): they were not appended, so the proposer may propose them again.
  | 'MsgPropDropped';

export interface Message {
  type: MessageType;
  to: number;
  from: number;
  /** 0 only for local messages and forwarded proposals/read requests. */
  term: number;
  /** MsgApp: term of the entry at `index`. Rejected MsgAppResp: term at the hint. MsgVote: last log term. */
  logTerm: number;
  /** MsgApp: index preceding `entries`. MsgAppResp: acknowledged (or rejected) index. MsgVote: last log index. */
  index: number;
  entries: Entry[];
  commit: number;
  snapshot?: Snapshot;
  reject: boolean;
  rejectHint: number;
  /** ReadIndex request context, heartbeat read context, or the campaign-transfer marker. */
  context?: Uint8Array;
}

/** Builds a message with every field present (monomorphic objects keep V8 fast). */
export function makeMessage(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    type: fields.type,
    to: fields.to ?? NONE,
    from: fields.from ?? NONE,
    term: fields.term ?? 0,
    logTerm: fields.logTerm ?? 0,
    index: fields.index ?? 0,
    entries: fields.entries ?? [],
    commit: fields.commit ?? 0,
    snapshot: fields.snapshot,
    reject: fields.reject ?? false,
    rejectHint: fields.rejectHint ?? 0,
    context: fields.context,
  };
}

export function isLocalMessage(type: MessageType): boolean {
  return (
    type === 'MsgHup' ||
    type === 'MsgBeat' ||
    type === 'MsgCheckQuorum' ||
    type === 'MsgUnreachable' ||
    type === 'MsgSnapStatus'
  );
}

export function isResponseMessage(type: MessageType): boolean {
  return (
    type === 'MsgAppResp' ||
    type === 'MsgVoteResp' ||
    type === 'MsgPreVoteResp' ||
    type === 'MsgHeartbeatResp' ||
    type === 'MsgReadIndexResp'
  );
}

export type StateRole = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/** Volatile state worth telling the application about when it changes. */
export interface SoftState {
  readonly lead: number;
  readonly role: StateRole;
}

/** The outcome of a ReadIndex request: reads that arrived before it may be served at `index`. */
export interface ReadState {
  readonly index: number;
  readonly requestContext: Uint8Array;
}

export type ReadOnlyOption = 'safe' | 'lease-based';

/** One change inside a configuration change. */
export interface ConfChangeSingle {
  readonly type: 'add-voter' | 'add-learner' | 'remove' | 'update';
  readonly nodeId: number;
}

/**
 * How a change moves through joint consensus:
 * - `auto`: a single voter change is applied directly; anything larger enters a joint
 *   configuration that is left automatically;
 * - `joint-implicit`: always joint, left automatically;
 * - `joint-explicit`: always joint, left only by proposing an empty change.
 */
export type ConfChangeTransition = 'auto' | 'joint-implicit' | 'joint-explicit';

export interface ConfChange {
  readonly transition: ConfChangeTransition;
  readonly changes: readonly ConfChangeSingle[];
  /** Opaque to Raft (e.g. the new member's URLs). */
  readonly context: Uint8Array;
}

/** An empty change: leaves a joint configuration. */
export const LEAVE_JOINT: ConfChange = Object.freeze({
  transition: 'auto',
  changes: [],
  context: new Uint8Array(0),
});

export function isLeaveJoint(cc: ConfChange): boolean {
  return cc.transition === 'auto' && cc.changes.length === 0;
}

/** Whether `cc` enters a joint configuration, and if so whether it is left automatically. */
export function entersJoint(cc: ConfChange): { joint: boolean; autoLeave: boolean } {
  if (cc.transition !== 'auto' || cc.changes.length > 1) {
    return { joint: true, autoLeave: cc.transition !== 'joint-explicit' };
  }
  return { joint: false, autoLeave: false };
}
