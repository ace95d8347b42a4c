/**
 * The interpreter behind the scenario transcripts (test/raft/scenarios/*.txt; format and commands
 * in README.md). It holds an in-memory group: N RawNodes, each with its own MemoryLogStorage and a
 * state machine that records applied payloads. Nothing happens on its own: messages wait in the
 * recipient's inbox until a command delivers them, time moves only when a node is ticked, and a
 * Ready is handled only when a command asks for it.
 *
 * Beyond the expected output, the environment checks two safety properties after every step (at
 * most one leader per term; no two nodes apply different entries at the same index) and the
 * `expect-*` commands assert facts. Both fail the test whatever the expected output says.
 */
import {
  type ConfChange,
  type ConfChangeSingle,
  type ConfChangeTransition,
  type ConfState,
  type DropReason,
  type Entry,
  type Message,
  MemoryLogStorage,
  ProposalDroppedError,
  RawNode,
  type RaftLogger,
  type ReadOnlyOption,
  type ReadState,
  SeededPrng,
  type StateRole,
  decodeConfChange,
  describeConfChange,
  describeMessage,
  describeReady,
  dropReasonText,
} from '../../../raft/index.js';
import { bytes, formatConfState, formatLog, formatStateLine, formatStatus, text } from './format.js';

// -------------------------------------------------------------------------------------------------
// Limits

/** Rounds of `stabilize` (handle every Ready, deliver every message) before giving up. */
const stabilizeRoundsMax = 200;
/** Ticks one tick command may run. */
const ticksPerCommandMax = 10_000;
/** Election and heartbeat timeouts unless add-nodes says otherwise (as etcd's interaction tests). */
const electionTicksDefault = 3;
const heartbeatTicksDefault = 1;

// -------------------------------------------------------------------------------------------------
// Transcript files

export interface Block {
  /** Comment and blank lines before the command, kept verbatim. */
  readonly before: readonly string[];
  readonly command: string;
  /** 1-based line of the command in the file. */
  readonly line: number;
  /** Undefined when the command has no `----` section yet (filled in by UPDATE_SCENARIOS=1). */
  readonly expected: readonly string[] | undefined;
}

export interface Transcript {
  readonly blocks: readonly Block[];
  readonly trailing: readonly string[];
}

const isSpacer = (line: string): boolean => line.trim() === '' || line.startsWith('#');

export function parseTranscript(source: string): Transcript {
  const lines = source.split('\n');
  const blocks: Block[] = [];
  let before: string[] = [];
  let at = 0;
  while (at < lines.length) {
    const line = lines[at]!;
    if (isSpacer(line)) {
      before.push(line);
      at++;
      continue;
    }
    const commandLine = at + 1;
    at++;
    let expected: string[] | undefined;
    if (lines[at] === '----') {
      expected = [];
      for (at++; at < lines.length && lines[at]!.trim() !== ''; at++) expected.push(lines[at]!);
      at++; // the blank line that ends the block
    } else if (lines[at]?.trim() === '') {
      at++; // no output yet: the blank line still ends the block
    }
    blocks.push({ before, command: line, line: commandLine, expected });
    before = [];
  }
  // split() leaves one '' after the final newline; it is not a line of the file.
  if (before.length > 0 && before[before.length - 1] === '') before.pop();
  return { blocks, trailing: before };
}

/** Renders a transcript with the given outputs (one per block) in the canonical layout. */
export function renderTranscript(transcript: Transcript, outputs: readonly (readonly string[])[]): string {
  const parts: string[] = [];
  transcript.blocks.forEach((block, i) => {
    parts.push(...block.before, block.command, '----', ...outputs[i]!, '');
  });
  parts.push(...transcript.trailing);
  const joined = parts.join('\n');
  return joined.endsWith('\n') ? joined : `${joined}\n`;
}

export interface TranscriptResult {
  /** The file as it should read with the actual outputs. */
  readonly actual: string;
  /** Assertion and safety failures, each with its line. */
  readonly failures: readonly string[];
}

export function runTranscript(source: string, fileName: string): TranscriptResult {
  const transcript = parseTranscript(source);
  const env = new ScenarioEnv();
  const outputs: string[][] = [];
  for (const block of transcript.blocks) {
    outputs.push(env.run(block.command, `${fileName}:${block.line}`));
  }
  return { actual: renderTranscript(transcript, outputs), failures: env.failures };
}

// -------------------------------------------------------------------------------------------------
// Command arguments

/**
 * A command line split into words. `(1 2 3)` stays one word; `key=value` words are named
 * arguments (the value may be a parenthesised list).
 */
class Args {
  readonly positional: string[] = [];
  readonly named = new Map<string, string>();
  private readonly used = new Set<string>();

  constructor(words: readonly string[]) {
    for (const word of words) {
      const eq = word.indexOf('=');
      const paren = word.indexOf('(');
      if (eq > 0 && (paren < 0 || eq < paren)) this.named.set(word.slice(0, eq), word.slice(eq + 1));
      else this.positional.push(word);
    }
  }

  static split(line: string): { name: string; args: Args } {
    const words: string[] = [];
    let current = '';
    let depth = 0;
    for (const ch of line.trim()) {
      if (ch === '(') depth++;
      if (ch === ')') depth--;
      if (/\s/.test(ch) && depth === 0) {
        if (current !== '') words.push(current);
        current = '';
      } else {
        current += ch;
      }
    }
    if (current !== '') words.push(current);
    const [name, ...rest] = words;
    return { name: name ?? '', args: new Args(rest) };
  }

  option(key: string): string | undefined {
    this.used.add(key);
    return this.named.get(key);
  }

  bool(key: string, fallback: boolean): boolean {
    const value = this.option(key);
    if (value === undefined) return fallback;
    if (value !== 'true' && value !== 'false') throw new UsageError(`${key} must be true or false, got ${value}`);
    return value === 'true';
  }

  int(key: string): number | undefined {
    const value = this.option(key);
    return value === undefined ? undefined : parseNumber(value, key);
  }

  ids(key: string): number[] | undefined {
    const value = this.option(key);
    return value === undefined ? undefined : parseIds(value);
  }

  /** Rejects named arguments the command did not read (typos must not pass silently). */
  checkAllUsed(): void {
    for (const key of this.named.keys()) {
      if (!this.used.has(key)) throw new UsageError(`unknown argument ${key}=`);
    }
  }
}

class UsageError extends Error {
  override readonly name = 'UsageError';
}

function parseNumber(value: string, what: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`${what} must be a non-negative integer, got ${value}`);
  return n;
}

/** `3`, `(1 2 3)` or `()`. */
function parseIds(value: string): number[] {
  const inner = value.startsWith('(') && value.endsWith(')') ? value.slice(1, -1) : value;
  return inner
    .split(/[\s,]+/)
    .filter((word) => word !== '')
    .map((word) => parseNumber(word, 'node id'));
}

// -------------------------------------------------------------------------------------------------
// Nodes

type Level = 'debug' | 'info' | 'warn' | 'none';
const levelRank: Readonly<Record<Level, number>> = { debug: 0, info: 1, warn: 2, none: 3 };

interface NodeOptions {
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly readOnlyOption: ReadOnlyOption;
  readonly stepDownOnRemoval: boolean;
  readonly messageBytesMax: number | undefined;
}

/** One member: its durable storage survives a crash; the RawNode and state machine do not. */
interface ScenarioNode {
  readonly id: number;
  readonly storage: MemoryLogStorage;
  readonly options: NodeOptions;
  raw: RawNode;
  confState: ConfState;
  /** The state machine: payloads of applied non-empty normal entries, in order. */
  applied: string[];
  appliedIndex: number;
  /** Every ReadState the node's Readies handed out, oldest first. */
  readonly readStates: ReadState[];
}

/** Snapshot data is the state machine: the applied payloads, as JSON. */
function encodeStateMachine(applied: readonly string[]): Uint8Array {
  return bytes(JSON.stringify(applied));
}

function decodeStateMachine(data: Uint8Array): string[] {
  if (data.byteLength === 0) return [];
  const parsed: unknown = JSON.parse(text(data));
  if (!Array.isArray(parsed) || !parsed.every((v) => typeof v === 'string')) {
    throw new Error('snapshot data is not a state machine image');
  }
  return parsed;
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a.term === b.term && a.type === b.type && text(a.data) === text(b.data);
}

const roles: readonly StateRole[] = ['follower', 'pre-candidate', 'candidate', 'leader'];

// -------------------------------------------------------------------------------------------------
// The environment

type Handler = (env: ScenarioEnv, args: Args) => void;

export class ScenarioEnv {
  readonly failures: string[] = [];
  private readonly nodes = new Map<number, ScenarioNode>();
  private readonly inboxes = new Map<number, Message[]>();
  /** Node id -> partition group; undefined when the network is whole. */
  private groups: Map<number, number> | undefined;
  private level: Level = 'warn';
  /** Nodes whose log lines are shown; undefined for all. */
  private logNodes: ReadonlySet<number> | undefined;
  /** Safety: the leader seen in each term, and the entry applied at each index. */
  private readonly leaders = new Map<number, number>();
  private readonly appliedEntries = new Map<number, Entry>();
  private output: string[] = [];
  private indentation = '';
  private where = '';

  /** Runs one command line and returns its output lines ("ok" when it printed nothing). */
  run(line: string, where: string): string[] {
    this.output = [];
    this.indentation = '';
    this.where = where;
    const { name, args } = Args.split(line);
    const handler = commands.get(name);
    try {
      if (handler === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
      handler(this, args);
      args.checkAllUsed();
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      this.indentation = '';
      this.emit(`error: ${message}`);
      this.failures.push(`${where}: ${line}: ${message}`);
    }
    return this.output.length === 0 ? ['ok'] : this.output;
  }

  // --- output ------------------------------------------------------------------------------------

  /** Prints a line of output whatever the log level (inspection commands, failures). */
  emit(line: string): void {
    for (const part of line.split('\n')) {
      if (part.trim() !== '') this.output.push(`${this.indentation}${part}`);
    }
  }

  /** Prints what happens (Readies, deliveries, refusals); `log-level none` silences it. */
  trace(line: string): void {
    if (this.level !== 'none') this.emit(line);
  }

  private indented(by: string, body: () => void): void {
    const saved = this.indentation;
    this.indentation = saved + by;
    try {
      body();
    } finally {
      this.indentation = saved;
    }
  }

  fail(message: string): void {
    this.emit(`FAILED: ${message}`);
    this.failures.push(`${this.where}: ${message}`);
  }

  check(condition: boolean, message: () => string): void {
    if (!condition) this.fail(message());
  }

  setLogLevel(level: string, nodes: readonly number[]): void {
    if (!(level in levelRank)) throw new UsageError(`log level must be one of ${Object.keys(levelRank).join(', ')}`);
    this.level = level as Level;
    this.logNodes = nodes.length === 0 ? undefined : new Set(nodes);
  }

  private loggerFor(id: number): RaftLogger {
    const log = (level: Level, message: string): void => {
      if (levelRank[level] < levelRank[this.level]) return;
      if (this.logNodes !== undefined && !this.logNodes.has(id)) return;
      this.emit(`${level.toUpperCase()} ${message}`);
    };
    return {
      debug: (message) => log('debug', message),
      info: (message) => log('info', message),
      warn: (message) => log('warn', message),
    };
  }

  // --- nodes -------------------------------------------------------------------------------------

  node(id: number): ScenarioNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new UsageError(`no node ${id}`);
    return node;
  }

  nodeIds(): number[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  addNode(id: number, storage: MemoryLogStorage, options: NodeOptions): void {
    if (this.nodes.has(id)) throw new UsageError(`node ${id} exists already`);
    this.nodes.set(id, { id, storage, options, readStates: [], ...this.boot(id, storage, options) });
  }

  /** Starts a node from what its storage holds: a new node, or one restarting after a crash. */
  private boot(
    id: number,
    storage: MemoryLogStorage,
    options: NodeOptions,
  ): Pick<ScenarioNode, 'raw' | 'confState' | 'applied' | 'appliedIndex'> {
    const snapshot = storage.snapshot();
    const raw = new RawNode({
      id,
      storage,
      random: new SeededPrng(id),
      electionTicks: options.electionTicks,
      heartbeatTicks: options.heartbeatTicks,
      checkQuorum: options.checkQuorum,
      preVote: options.preVote,
      readOnlyOption: options.readOnlyOption,
      stepDownOnRemoval: options.stepDownOnRemoval,
      messageBytesMax: options.messageBytesMax,
      applied: snapshot.metadata.index,
      logger: this.loggerFor(id),
    });
    return {
      raw,
      // The state machine is rebuilt from the snapshot; later entries are applied again.
      applied: decodeStateMachine(snapshot.data),
      appliedIndex: snapshot.metadata.index,
      confState: storage.initialState().confState,
    };
  }

  /** Loses everything not yet persisted (the RawNode, the state machine) and restarts. */
  crash(id: number): void {
    const node = this.node(id);
    Object.assign(node, this.boot(id, node.storage, node.options));
    const hs = node.storage.initialState().hardState;
    this.trace(
      `${id} restarted from storage: term=${hs.term} vote=${hs.vote} commit=${hs.commit} ` +
        `log=[${node.storage.firstIndex()}, ${node.storage.lastIndex()}] applied=${node.appliedIndex}`,
    );
  }

  reset(): void {
    this.nodes.clear();
    this.inboxes.clear();
    this.groups = undefined;
    this.leaders.clear();
    this.appliedEntries.clear();
  }

  /** Records the node's role; two leaders in one term is a safety failure. */
  observe(node: ScenarioNode): void {
    const r = node.raw.raft;
    if (r.role !== 'leader') return;
    const seen = this.leaders.get(r.term);
    if (seen === undefined) this.leaders.set(r.term, node.id);
    else if (seen !== node.id) this.fail(`safety: two leaders in term ${r.term}: ${seen} and ${node.id}`);
  }

  leaderOfTerm(term: number): number | undefined {
    return this.leaders.get(term);
  }

  // --- network -----------------------------------------------------------------------------------

  private send(m: Message): void {
    let inbox = this.inboxes.get(m.to);
    if (inbox === undefined) {
      inbox = [];
      this.inboxes.set(m.to, inbox);
    }
    inbox.push(m);
  }

  partition(groups: readonly (readonly number[])[]): void {
    const map = new Map<number, number>();
    groups.forEach((members, group) => {
      for (const id of members) {
        if (map.has(id)) throw new UsageError(`node ${id} is in two partition groups`);
        map.set(id, group);
      }
    });
    this.groups = map;
  }

  heal(): void {
    this.groups = undefined;
  }

  /** Whether the network drops messages between a and b. Unnamed nodes are cut off from all. */
  private isCut(a: number, b: number): boolean {
    if (this.groups === undefined) return false;
    const ga = this.groups.get(a);
    return ga === undefined || ga !== this.groups.get(b);
  }

  /**
   * Delivers (or drops) the messages waiting for `id` that pass the filter; returns whether there
   * were any.
   */
  deliver(id: number, filter: { drop: boolean; type?: string; from?: number }): boolean {
    const inbox = this.inboxes.get(id) ?? [];
    const matches = (m: Message): boolean =>
      (filter.type === undefined || m.type === filter.type) && (filter.from === undefined || m.from === filter.from);
    const chosen = inbox.filter(matches);
    if (chosen.length === 0) return false;
    this.inboxes.set(id, inbox.filter((m) => !chosen.includes(m)));
    const node = this.node(id);
    this.trace(`> ${id} receiving messages`);
    this.indented('  ', () => {
      for (const m of chosen) this.deliverOne(node, m, filter.drop);
    });
    return true;
  }

  private deliverOne(node: ScenarioNode, m: Message, drop: boolean): void {
    if (drop) {
      this.trace(`dropped: ${describeMessage(m)}`);
      return;
    }
    if (this.isCut(m.from, m.to)) {
      this.trace(`dropped (partition): ${describeMessage(m)}`);
      return;
    }
    this.trace(describeMessage(m));
    this.indented('  ', () => {
      const refused = node.raw.step(m);
      if (refused !== undefined) this.trace(`refused: ${refused} (${dropReasonText[refused]})`);
      this.observe(node);
    });
  }

  // --- Ready handling ------------------------------------------------------------------------------

  /**
   * Handles one Ready the way an application does: persist (snapshot, entries, hard state), send
   * the messages, apply the committed entries, advance. Returns false when there was none.
   */
  processReady(id: number): boolean {
    const node = this.node(id);
    const raw = node.raw;
    if (!raw.hasReady()) return false;
    const rd = raw.ready();
    this.trace(`> ${id} handling Ready`);
    this.indented('  ', () => {
      this.trace(describeReady(rd));
      if (rd.snapshot !== undefined) {
        node.storage.applySnapshot(rd.snapshot);
        node.applied = decodeStateMachine(rd.snapshot.data);
        node.appliedIndex = rd.snapshot.metadata.index;
        node.confState = rd.snapshot.metadata.confState;
      }
      node.storage.append(rd.entries);
      if (rd.hardState !== undefined) node.storage.setHardState(rd.hardState);
      for (const m of rd.messages) this.send(m);
      for (const m of rd.messagesAfterPersist) this.send(m);
      for (const entry of rd.committedEntries) this.apply(node, entry);
      node.readStates.push(...rd.readStates);
      raw.advance();
      this.observe(node);
    });
    return true;
  }

  private apply(node: ScenarioNode, entry: Entry): void {
    if (entry.index !== node.appliedIndex + 1) {
      this.fail(`${node.id} applies index ${entry.index} after ${node.appliedIndex}`);
    }
    const earlier = this.appliedEntries.get(entry.index);
    if (earlier === undefined) this.appliedEntries.set(entry.index, entry);
    else if (!sameEntry(earlier, entry)) {
      this.fail(`safety: ${node.id} applies ${entry.term}/${entry.index}, another node applied ${earlier.term}/${earlier.index}`);
    }
    node.appliedIndex = entry.index;
    if (entry.type === 'conf-change') {
      const cc = decodeConfChange(entry.data);
      node.confState = node.raw.applyConfChange(cc);
      this.trace(`applied conf change ${describeConfChange(cc)}: now ${formatConfState(node.confState)}`);
    } else if (entry.data.byteLength > 0) {
      node.applied.push(text(entry.data));
    }
  }

  stabilize(ids: readonly number[]): void {
    for (let round = 0; ; round++) {
      if (round >= stabilizeRoundsMax) throw new Error(`not stable after ${stabilizeRoundsMax} rounds`);
      let busy = false;
      for (const id of ids) busy = this.processReady(id) || busy;
      for (const id of ids) busy = this.deliver(id, { drop: false }) || busy;
      if (!busy) return;
    }
  }

  // --- time --------------------------------------------------------------------------------------

  /** Ticks the nodes `count` times in lockstep: time passes for all of them at once. */
  tick(ids: readonly number[], count: number): void {
    if (count > ticksPerCommandMax) throw new UsageError(`at most ${ticksPerCommandMax} ticks per command`);
    const nodes = ids.map((id) => this.node(id));
    for (let i = 0; i < count; i++) {
      for (const node of nodes) {
        node.raw.tick();
        this.observe(node);
      }
    }
  }

  /**
   * Ticks until a node's election timer fires: a leader's CheckQuorum round (which also ends a
   * leadership transfer), a follower's or candidate's randomized election timeout. With several
   * nodes, until the first of them fires.
   */
  ticksToElectionTimeout(ids: readonly number[]): number {
    return Math.min(
      ...ids.map((id) => {
        const r = this.node(id).raw.raft;
        const timeout = r.role === 'leader' ? r.electionTimeout : r.randomizedElectionTimeout;
        const remaining = timeout - r.electionElapsed;
        return remaining > 0 ? remaining : r.electionTimeout;
      }),
    );
  }

  // --- application calls -------------------------------------------------------------------------

  /** Runs a call that Raft may refuse; prints the refusal and checks it against `dropped=`. */
  refusable(args: Args, call: () => void): void {
    const expected = args.option('dropped');
    let refused: DropReason | undefined;
    try {
      call();
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error;
      refused = error.reason;
      this.trace(`dropped: ${refused} (${dropReasonText[refused]})`);
    }
    if (expected !== undefined) {
      const outcome = refused === undefined ? 'accepted' : `dropped with ${refused}`;
      this.check(refused === expected, () => `expected the request to be dropped with ${expected}, it was ${outcome}`);
    }
  }

  // --- inspection --------------------------------------------------------------------------------

  status(id: number): void {
    const r = this.node(id).raw.raft;
    const timeout = r.role === 'leader' ? r.electionTimeout : r.randomizedElectionTimeout;
    for (const line of formatStatus(this.node(id).raw.status())) this.emit(line);
    this.emit(`election timer: ${r.electionElapsed} of ${timeout} ticks`);
  }

  raftState(): void {
    for (const id of this.nodeIds()) this.emit(formatStateLine(this.node(id).raw.status()));
  }

  raftLog(id: number): void {
    const node = this.node(id);
    const s = node.storage;
    const stored = s.entries(s.firstIndex(), s.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
    const unstable = node.raw.raft.log.unstable.entries;
    const snapshot = s.snapshot().metadata;
    const compactedTo = s.firstIndex() - 1;
    for (const line of formatLog({ snapshotIndex: compactedTo, snapshotTerm: s.term(compactedTo), entries: stored, unstable })) {
      this.emit(line);
    }
    if (snapshot.index !== compactedTo) this.emit(`(latest snapshot at index ${snapshot.index})`);
  }

  /** The entries of a node's log: storage then anything not yet persisted. */
  logOf(id: number): Entry[] {
    return this.node(id).raw.raft.log.allEntries();
  }
}

// -------------------------------------------------------------------------------------------------
// Commands

function oneId(args: Args, position = 0): number {
  const word = args.positional[position];
  if (word === undefined) throw new UsageError('missing node id');
  return parseNumber(word, 'node id');
}

/** The node ids named by the positional arguments (each a number or a list), or all nodes. */
function idList(env: ScenarioEnv, words: readonly string[]): number[] {
  const ids = words.flatMap(parseIds);
  return ids.length === 0 ? env.nodeIds() : ids;
}

function parseConfChange(words: readonly string[], transition: ConfChangeTransition): ConfChange {
  const types: Readonly<Record<string, ConfChangeSingle['type']>> = { v: 'add-voter', l: 'add-learner', r: 'remove', u: 'update' };
  const changes = words.map((word): ConfChangeSingle => {
    const type = types[word.charAt(0)];
    if (type === undefined) throw new UsageError(`conf change ${word} must look like v4, l5, r2 or u3`);
    return { type, nodeId: parseNumber(word.slice(1), 'node id') };
  });
  return { transition, changes, context: new Uint8Array(0) };
}

const commands = new Map<string, Handler>([
  ['add-nodes', addNodes],
  ['reset', (env) => env.reset()],
  ['log-level', (env, args) => env.setLogLevel(args.positional[0] ?? '', args.positional.slice(1).flatMap(parseIds))],
  ['campaign', (env, args) => {
    const node = env.node(oneId(args));
    node.raw.campaign();
    env.observe(node);
  }],
  ['tick', (env, args) => env.tick(parseIds(args.positional[0] ?? ''), parseNumber(args.positional[1] ?? '', 'tick count'))],
  ['tick-heartbeat', (env, args) => {
    const ids = parseIds(args.positional[0] ?? '');
    env.tick(ids, Math.max(...ids.map((id) => env.node(id).options.heartbeatTicks)));
  }],
  ['tick-election', (env, args) => {
    const ids = parseIds(args.positional[0] ?? '');
    env.tick(ids, env.ticksToElectionTimeout(ids));
  }],
  ['propose', (env, args) => {
    const node = env.node(oneId(args));
    const data = args.positional.slice(1).map(bytes);
    if (data.length === 0) throw new UsageError('propose needs data');
    env.refusable(args, () => (data.length === 1 ? node.raw.propose(data[0]!) : node.raw.proposeMany(data)));
    env.observe(node);
  }],
  ['propose-conf-change', (env, args) => {
    const node = env.node(oneId(args));
    const transition = (args.option('transition') ?? 'auto') as ConfChangeTransition;
    if (!['auto', 'joint-implicit', 'joint-explicit'].includes(transition)) throw new UsageError(`unknown transition ${transition}`);
    const cc = parseConfChange(args.positional.slice(1), transition);
    env.refusable(args, () => node.raw.proposeConfChange(cc));
  }],
  ['read-index', (env, args) => {
    const node = env.node(oneId(args));
    const context = args.positional[1];
    if (context === undefined) throw new UsageError('read-index needs a context');
    env.refusable(args, () => node.raw.readIndex(bytes(context)));
  }],
  ['transfer-leadership', (env, args) => {
    const from = args.int('from');
    const to = args.int('to');
    if (from === undefined || to === undefined) throw new UsageError('transfer-leadership needs from= and to=');
    const node = env.node(from);
    env.refusable(args, () => node.raw.transferLeader(to));
  }],
  ['report-snapshot', (env, args) => env.node(oneId(args)).raw.reportSnapshot(oneId(args, 1), args.bool('ok', true))],
  ['report-unreachable', (env, args) => env.node(oneId(args)).raw.reportUnreachable(oneId(args, 1))],
  ['process-ready', (env, args) => {
    for (const id of idList(env, args.positional)) {
      if (!env.processReady(id)) env.trace(`> ${id} has no Ready`);
    }
  }],
  ['deliver-msgs', (env, args) => {
    const filter = { drop: args.bool('drop', false), type: args.option('type'), from: args.int('from') };
    for (const id of idList(env, args.positional)) env.deliver(id, filter);
  }],
  ['stabilize', (env, args) => env.stabilize(idList(env, args.positional))],
  ['partition', (env, args) => {
    const groups: number[][] = [[]];
    for (const word of args.positional) {
      if (word === '|') groups.push([]);
      else groups[groups.length - 1]!.push(...parseIds(word));
    }
    if (groups.length < 2 || groups.some((g) => g.length === 0)) throw new UsageError('partition needs groups like: 1 | 2 3');
    env.partition(groups);
  }],
  ['heal', (env) => env.heal()],
  ['crash', (env, args) => env.crash(oneId(args))],
  ['snapshot', snapshot],
  ['compact', compact],
  ['status', (env, args) => env.status(oneId(args))],
  ['raft-log', (env, args) => env.raftLog(oneId(args))],
  ['raft-state', (env) => env.raftState()],
  ...assertions(),
]);

function addNodes(env: ScenarioEnv, args: Args): void {
  const count = parseNumber(args.positional[0] ?? '', 'node count');
  const voters = args.ids('voters');
  const learners = args.ids('learners') ?? [];
  const bootstrap = args.bool('bootstrap', false);
  const readOnly = args.option('read-only') ?? 'safe';
  if (readOnly !== 'safe' && readOnly !== 'lease-based') throw new UsageError('read-only must be safe or lease-based');
  const options: NodeOptions = {
    electionTicks: args.int('election') ?? electionTicksDefault,
    heartbeatTicks: args.int('heartbeat') ?? heartbeatTicksDefault,
    checkQuorum: args.bool('checkquorum', true),
    preVote: args.bool('prevote', true),
    readOnlyOption: readOnly,
    stepDownOnRemoval: args.bool('step-down-on-removal', true),
    messageBytesMax: args.int('max-msg-bytes'),
  };
  if (bootstrap && (voters === undefined || learners.length > 0)) {
    throw new UsageError('bootstrap=true needs voters= and no learners=');
  }
  const first = Math.max(0, ...env.nodeIds()) + 1;
  for (let id = first; id < first + count; id++) {
    let storage: MemoryLogStorage;
    if (voters === undefined) storage = new MemoryLogStorage(); // joins later, learns the config
    else if (bootstrap) storage = MemoryLogStorage.bootstrapped(voters);
    else storage = MemoryLogStorage.withMembers(voters, learners);
    env.addNode(id, storage, options);
  }
}

function snapshot(env: ScenarioEnv, args: Args): void {
  const node = env.node(oneId(args));
  const snap = node.storage.createSnapshot(node.appliedIndex, node.confState, encodeStateMachine(node.applied));
  env.trace(`${node.id} snapshot at index ${snap.metadata.index} term ${snap.metadata.term}, ${formatConfState(node.confState)}`);
}

function compact(env: ScenarioEnv, args: Args): void {
  const node = env.node(oneId(args));
  const index = parseNumber(args.positional[1] ?? '', 'index');
  const snapshotIndex = node.storage.snapshot().metadata.index;
  // Entries may be dropped only once a snapshot covers them: it is what a lagging follower gets.
  if (index > snapshotIndex) throw new UsageError(`compact ${index}: the latest snapshot is at ${snapshotIndex}`);
  node.storage.compact(index);
  env.trace(`${node.id} log compacted: first index now ${node.storage.firstIndex()}`);
}

// -------------------------------------------------------------------------------------------------
// Assertions: each prints "ok" or fails the test with a message, whatever the expected output.

function assertions(): Array<[string, Handler]> {
  const each = (env: ScenarioEnv, args: Args, check: (node: ScenarioNode) => void): void => {
    const ids = parseIds(args.positional[0] ?? '');
    if (ids.length === 0) throw new UsageError('missing node id');
    for (const id of ids) check(env.node(id));
  };
  return [
    ['expect-leader', (env, args) => {
      const term = args.int('term');
      each(env, args, (node) => {
        const r = node.raw.raft;
        env.check(r.role === 'leader', () => `${node.id} is ${r.role}, not leader (term ${r.term})`);
        if (term !== undefined) env.check(r.term === term, () => `${node.id} is at term ${r.term}, not ${term}`);
      });
    }],
    ['expect-role', (env, args) => {
      const role = args.positional[1] as StateRole;
      if (!roles.includes(role)) throw new UsageError(`role must be one of ${roles.join(', ')}`);
      each(env, args, (node) => env.check(node.raw.raft.role === role, () => `${node.id} is ${node.raw.raft.role}, not ${role}`));
    }],
    ['expect-term', (env, args) => {
      const term = parseNumber(args.positional[1] ?? '', 'term');
      each(env, args, (node) => env.check(node.raw.raft.term === term, () => `${node.id} is at term ${node.raw.raft.term}, not ${term}`));
    }],
    ['expect-lead', (env, args) => {
      const lead = parseNumber(args.positional[1] ?? '', 'leader id');
      each(env, args, (node) => env.check(node.raw.raft.lead === lead, () => `${node.id} follows ${node.raw.raft.lead}, not ${lead}`));
    }],
    ['expect-commit', (env, args) => {
      const index = parseNumber(args.positional[1] ?? '', 'commit index');
      each(env, args, (node) => {
        const committed = node.raw.raft.log.committed;
        env.check(committed === index, () => `${node.id} has commit index ${committed}, not ${index}`);
      });
    }],
    ['expect-applied', (env, args) => {
      const want = args.positional.slice(1);
      each(env, args, (node) => {
        const got = node.applied;
        env.check(JSON.stringify(got) === JSON.stringify(want), () => `${node.id} applied [${got.join(' ')}], not [${want.join(' ')}]`);
      });
    }],
    ['expect-read-state', (env, args) => {
      const context = args.option('ctx');
      const index = args.int('index');
      if (context === undefined || index === undefined) throw new UsageError('expect-read-state needs ctx= and index=');
      each(env, args, (node) => {
        const found = node.readStates.filter((rs) => text(rs.requestContext) === context);
        env.check(found.length === 1, () => `${node.id} got ${found.length} read states for ${context}, not one`);
        const got = found[0]?.index;
        env.check(got === undefined || got === index, () => `${node.id} read state ${context} has index ${got}, not ${index}`);
      });
    }],
    ['expect-no-read-state', (env, args) => {
      const context = args.option('ctx');
      if (context === undefined) throw new UsageError('expect-no-read-state needs ctx=');
      each(env, args, (node) => {
        const found = node.readStates.filter((rs) => text(rs.requestContext) === context);
        env.check(found.length === 0, () => `${node.id} got a read state for ${context} at index ${found[0]?.index}`);
      });
    }],
    ['expect-no-leader-in-term', (env, args) => {
      const term = parseNumber(args.positional[0] ?? '', 'term');
      const leader = env.leaderOfTerm(term);
      env.check(leader === undefined, () => `${leader} was leader in term ${term}`);
    }],
    ['expect-entry', (env, args) => {
      const index = parseNumber(args.positional[1] ?? '', 'index');
      const term = args.int('term');
      const data = args.option('data');
      each(env, args, (node) => {
        const entry = env.logOf(node.id).find((e) => e.index === index);
        if (entry === undefined) return env.fail(`${node.id} has no entry at index ${index}`);
        if (term !== undefined) env.check(entry.term === term, () => `${node.id} has term ${entry.term} at index ${index}, not ${term}`);
        const got = JSON.stringify(text(entry.data));
        if (data !== undefined) {
          env.check(text(entry.data) === data, () => `${node.id} has ${got} at index ${index}, not ${JSON.stringify(data)}`);
        }
      });
    }],
    ['expect-last-index', (env, args) => {
      const index = parseNumber(args.positional[1] ?? '', 'index');
      each(env, args, (node) => {
        const last = node.raw.raft.log.lastIndex();
        env.check(last === index, () => `${node.id} has last index ${last}, not ${index}`);
      });
    }],
    ['expect-same-log', (env, args) => {
      const [first, ...others] = parseIds(args.positional[0] ?? '');
      if (first === undefined || others.length === 0) throw new UsageError('expect-same-log needs (ID ID ...)');
      const describe = (id: number): string => env.logOf(id).map((e) => `${e.term}/${e.index}`).join(' ');
      const reference = describe(first);
      for (const id of others) {
        const log = describe(id);
        env.check(log === reference, () => `log of ${id} [${log}] differs from log of ${first} [${reference}]`);
      }
    }],
    ['expect-config', (env, args) => {
      const want = {
        voters: args.ids('voters'),
        votersOutgoing: args.ids('outgoing') ?? (args.named.has('voters') ? [] : undefined),
        learners: args.ids('learners'),
      };
      each(env, args, (node) => {
        const cs = node.raw.status().config;
        for (const [key, ids] of Object.entries(want)) {
          if (ids === undefined) continue;
          const got = cs[key as keyof typeof want];
          env.check(got.join(' ') === ids.join(' '), () => `${node.id} has ${key} (${got.join(' ')}), not (${ids.join(' ')})`);
        }
      });
    }],
    ['expect-progress', (env, args) => {
      const leader = env.node(oneId(args));
      const follower = oneId(args, 1);
      const pr = leader.raw.status().progress?.get(follower);
      if (pr === undefined) return env.fail(`${leader.id} has no progress for ${follower} (is it the leader?)`);
      const match = args.int('match');
      const next = args.int('next');
      const state = args.option('state');
      if (match !== undefined) env.check(pr.match === match, () => `${leader.id} sees match ${pr.match} for ${follower}, not ${match}`);
      if (next !== undefined) env.check(pr.next === next, () => `${leader.id} sees next ${pr.next} for ${follower}, not ${next}`);
      if (state !== undefined) env.check(pr.state === state, () => `${leader.id} sees ${follower} in ${pr.state}, not ${state}`);
    }],
    ['expect-transferee', (env, args) => {
      const want = parseNumber(args.positional[1] ?? '', 'transferee');
      each(env, args, (node) => {
        const got = node.raw.raft.leadTransferee;
        env.check(got === want, () => `${node.id} transfers leadership to ${got}, not ${want}`);
      });
    }],
  ];
}
