/**
 * The watch checker: etcd's six watch guarantees, checked over a recorded run.
 *
 * Input: the store's committed history (every revision with its events, in order, plus the
 * compactions) and one record per watch stream (its parameters and the responses the client
 * received, in order). Output: `{ ok, violations }`, each violation naming the guarantee, the
 * watch and, where there is one, the revision.
 *
 * - ordered:      events' (modRevision, position in the revision) never go down;
 * - unique:       no (revision, key) event arrives twice;
 * - atomic:       a revision's events arrive in one response (a fragmented response is one);
 * - bookmarkable: nothing at or below a progress notification's revision arrives after it;
 * - reliable:     no matching event is missing between the watch's start (or first delivered
 *                 revision) and its last delivered or bookmarked revision; prevKv is right;
 * - resumable:    a watch from revision r first delivers the first matching revision >= r, and a
 *                 watch whose start was compacted is canceled with the compaction's revision;
 * - contents:     delivered events exist in the history, match the watch, and carry the
 *                 history's value, version, createRevision and modRevision;
 * - stream:       the record's shape (created first, nothing after a cancel, headers);
 * - agreement:    across streams (on any nodes), the same events in the same order: two streams
 *                 that delivered a revision delivered the same events of it (for the keys both
 *                 watch, compared field by field, in the same order), and no two streams
 *                 delivered two revisions in opposite orders. Checked among the streams alone,
 *                 so it holds even where the history is incomplete or itself wrong.
 *
 * Compaction, as etcd does it: a watch whose start r is below a compaction C (r < C,
 * `w.minRev < compactRev` in etcd's watcher group) must be canceled with a compactRevision; r == C
 * is served (the checker also accepts a cancel there, as a stricter server might do). What
 * compaction removes is allowed to be missing, wherever a watch meets it: delete events at a
 * compaction revision C (the tombstones are dropped; the puts at C are kept), and the prevKv of
 * an event at revision R <= C (etcd reads prevKv at R - 1 when it sends, which may by then be
 * compacted). A prevKv that is present must still be right.
 *
 * Pure: no I/O, no clock, no node:* imports. Malformed input (a history that is not a history)
 * throws a TypeError; misbehaviour of the watch is returned as violations, never thrown.
 */

// ---------------------------------------------------------------------------------------------
// Input model

/** A key's version as a watch shows it (etcd's mvccpb.KeyValue; `KeyValue` fits). */
export interface WatchKeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** Compared only when both sides carry it. */
  readonly lease?: number;
}

/**
 * One change, as recorded in the history and as delivered to a watch. A delete is etcd's
 * tombstone: key and modRevision are meaningful, createRevision and version are 0 and it has
 * no value. (An `MvccEvent` maps over as `{ type, ...kv, prevKv }`.)
 */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: Uint8Array;
  readonly value?: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** Compared (and carried into the derived prevKv) only when present. */
  readonly lease?: number;
  /** In a delivered event: present only if the watch asked for it. In the history: optional. */
  readonly prevKv?: WatchKeyValue;
}

/** One committed revision: its events in the order the write (or txn) made them. */
export interface HistoryRevision {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

export interface Compaction {
  /** Revisions below this are gone (etcd's compact revision). */
  readonly revision: number;
  /**
   * The store's revision when the compaction took effect (the compact response's header), if
   * known. A watch whose `created` header is above it was created after the compaction; without
   * it the compaction counts as in force for every watch.
   */
  readonly atRevision?: number;
}

/**
 * The store's committed history. It must hold every revision with events from the store's
 * beginning (or, for a key's first appearance, the event's own `prevKv`), so that prevKv can be
 * derived; revisions without events (none in etcd) are simply absent.
 */
export interface WatchHistory {
  readonly revisions: readonly HistoryRevision[];
  readonly compactions?: readonly Compaction[];
  /**
   * The store's revision when the recording ended; default the last revision in `revisions`, or
   * 1 (etcd's revision of an empty store). Progress notifications may not go past it.
   */
  readonly headRevision?: number;
}

/** What the watch asked for (etcd's WatchCreateRequest). */
export interface WatchParams {
  readonly key: Uint8Array;
  /** Undefined or empty: the single key; [0]: every key >= key; otherwise [key, rangeEnd). */
  readonly rangeEnd?: Uint8Array;
  /** 0 or undefined: from the store's revision at creation + 1. */
  readonly startRevision?: number;
  readonly noPut?: boolean;
  readonly noDelete?: boolean;
  /** Whether the watch asked for prevKv. */
  readonly prevKv?: boolean;
}

export type WatchResponse =
  | { readonly kind: 'created'; readonly headerRevision?: number }
  | {
      readonly kind: 'events';
      readonly headerRevision: number;
      readonly events: readonly WatchEvent[];
      /** True on every piece of a fragmented response but the last. */
      readonly fragment?: boolean;
    }
  | { readonly kind: 'progress'; readonly headerRevision: number }
  | { readonly kind: 'canceled'; readonly reason: string; readonly compactRevision?: number };

/** How the stream ended: the client closed it, it broke (connection lost), or the server canceled it. */
export type WatchEnd = 'client-closed' | 'broken' | 'canceled';

export interface WatchRecord {
  /** Names the watch in messages; default `#<position>`. */
  readonly name?: string;
  readonly params: WatchParams;
  /** Everything the client received, in order. */
  readonly responses: readonly WatchResponse[];
  readonly end: WatchEnd;
  /**
   * For a watch reopened after an earlier stream ended: the first revision the client had not
   * yet seen (last delivered or bookmarked + 1). The watch must start there.
   */
  readonly resumedFrom?: number;
}

// ---------------------------------------------------------------------------------------------
// Output

export type WatchGuarantee =
  | 'ordered'
  | 'unique'
  | 'atomic'
  | 'bookmarkable'
  | 'reliable'
  | 'resumable'
  | 'contents'
  | 'stream'
  | 'agreement';

export interface Violation {
  readonly guarantee: WatchGuarantee;
  readonly watch: string;
  readonly revision?: number;
  /** `<guarantee>: watch <name>[ at revision <r>]: <what happened>`. */
  readonly message: string;
}

export interface CheckResult {
  readonly ok: boolean;
  /** At most `violationsPerWatchMax` per watch, in the order found. */
  readonly violations: Violation[];
  /** Violations found beyond that limit and left out (a badly broken stream reports thousands). */
  readonly omitted: number;
}

/** Violations kept per watch; one broken engine should not produce megabytes of messages. */
export const violationsPerWatchMax = 100;

// ---------------------------------------------------------------------------------------------
// Bytes and ranges (the checker keeps its own copy so it imports nothing)

export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return (a?.length ?? 0) === 0 && (b?.length ?? 0) === 0;
  return compareKeys(a, b) === 0;
}

/** Whether `key` is in the watch's range, with etcd's rangeEnd rules. */
export function keyInWatchRange(key: Uint8Array, params: Pick<WatchParams, 'key' | 'rangeEnd'>): boolean {
  const end = params.rangeEnd;
  if (end === undefined || end.length === 0) return compareKeys(key, params.key) === 0;
  if (compareKeys(key, params.key) < 0) return false;
  const open = end.length === 1 && end[0] === 0;
  return open || compareKeys(key, end) < 0;
}

/** Whether the watch wants this event: key in range and type not filtered out. */
export function watchMatches(event: Pick<WatchEvent, 'type' | 'key'>, params: WatchParams): boolean {
  if (event.type === 'put' && params.noPut === true) return false;
  if (event.type === 'delete' && params.noDelete === true) return false;
  return keyInWatchRange(event.key, params);
}

/** Bytes of a key shown in a message; longer keys are cut with "...". */
export const keyShownBytesMax = 64;

/** A key for messages: printable ASCII as text, anything else as hex. */
export function showKey(key: Uint8Array): string {
  const shown = key.subarray(0, keyShownBytesMax);
  const more = key.length > shown.length ? '...' : '';
  const printable = shown.every((b) => b >= 0x20 && b < 0x7f && b !== 0x22);
  if (printable) return `"${Array.from(shown, (b) => String.fromCharCode(b)).join('')}${more}"`;
  return `0x${keyId(shown)}${more}`;
}

function keyId(key: Uint8Array): string {
  return Array.from(key, (b) => b.toString(16).padStart(2, '0')).join('');
}

function showEvent(event: Pick<WatchEvent, 'type' | 'key'>): string {
  return `${event.type} ${showKey(event.key)}`;
}

// ---------------------------------------------------------------------------------------------
// The history, indexed

interface IndexedEvent {
  readonly event: WatchEvent;
  readonly revision: number;
  /** Position within its revision. */
  readonly position: number;
  /** The key's version live just before this revision, derived from the history. */
  readonly expectedPrevKv: WatchKeyValue | undefined;
}

interface IndexedRevision {
  readonly revision: number;
  readonly events: readonly IndexedEvent[];
  readonly byKey: ReadonlyMap<string, IndexedEvent>;
}

/** The history checked for shape and indexed by revision and key; shared by every watch. */
export class HistoryIndex {
  readonly revisions: readonly IndexedRevision[];
  readonly compactions: readonly Compaction[];
  /** The store's revision at the end of the recording. */
  readonly head: number;
  private readonly byRevision = new Map<number, IndexedRevision>();

  constructor(history: WatchHistory) {
    this.revisions = indexRevisions(history.revisions);
    for (const r of this.revisions) this.byRevision.set(r.revision, r);
    const last = this.revisions.at(-1)?.revision ?? 1;
    this.head = history.headRevision ?? last;
    assertRevision(this.head, 'head revision');
    if (this.head < last) throw new TypeError(`watch checker: head revision ${this.head} is below the history's revision ${last}`);
    this.compactions = history.compactions ?? [];
    for (const c of this.compactions) assertRevision(c.revision, 'compaction revision');
  }

  /** Whether compaction may have removed this event (a tombstone at a compaction revision). */
  mayBeCompacted(indexed: IndexedEvent): boolean {
    return indexed.event.type === 'delete' && this.compactions.some((c) => c.revision === indexed.revision);
  }

  /** Whether an event's prevKv (the key at revision - 1) may be gone to compaction. */
  prevKvMayBeCompacted(revision: number): boolean {
    return this.compactions.some((c) => c.revision >= revision);
  }

  lookup(revision: number, key: Uint8Array): IndexedEvent | undefined {
    return this.byRevision.get(revision)?.byKey.get(keyId(key));
  }

  /** Revisions with events in [from, to], in order. */
  between(from: number, to: number): IndexedRevision[] {
    let low = 0;
    let high = this.revisions.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.revisions[mid]!.revision < from) low = mid + 1;
      else high = mid;
    }
    const out: IndexedRevision[] = [];
    for (let i = low; i < this.revisions.length && this.revisions[i]!.revision <= to; i++) out.push(this.revisions[i]!);
    return out;
  }
}

function assertRevision(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`watch checker: ${what} ${value} is not a revision`);
}

function indexRevisions(revisions: readonly HistoryRevision[]): IndexedRevision[] {
  const live = new Map<string, WatchKeyValue | undefined>();
  const out: IndexedRevision[] = [];
  let previous = 0;
  for (const { revision, events } of revisions) {
    assertRevision(revision, 'history revision');
    if (revision <= previous) throw new TypeError(`watch checker: history revision ${revision} follows ${previous}`);
    previous = revision;
    const byKey = new Map<string, IndexedEvent>();
    const indexed = events.map((event, position) => {
      if (event.modRevision !== revision) {
        throw new TypeError(`watch checker: history event at revision ${revision} has modRevision ${event.modRevision}`);
      }
      const id = keyId(event.key);
      if (byKey.has(id)) throw new TypeError(`watch checker: key ${showKey(event.key)} changes twice in revision ${revision}`);
      const expectedPrevKv = live.has(id) ? live.get(id) : event.prevKv;
      const entry: IndexedEvent = { event, revision, position, expectedPrevKv };
      byKey.set(id, entry);
      return entry;
    });
    for (const { event } of indexed) live.set(keyId(event.key), event.type === 'put' ? asKeyValue(event) : undefined);
    out.push({ revision, events: indexed, byKey });
  }
  return out;
}

function asKeyValue(event: WatchEvent): WatchKeyValue {
  const { key, createRevision, modRevision, version, lease } = event;
  return { key, value: event.value ?? new Uint8Array(0), createRevision, modRevision, version, lease };
}

// ---------------------------------------------------------------------------------------------
// Checking one watch

/** An event the client received, with where it arrived. */
interface Delivered {
  readonly event: WatchEvent;
  readonly responseIndex: number;
  /** Which delivery (a response, or the pieces of one fragmented response) it came in. */
  readonly delivery: number;
  readonly indexed: IndexedEvent;
}

type Report = (guarantee: WatchGuarantee, revision: number | undefined, message: string) => void;

/** Checks watch records against one history, indexed once. */
export class WatchChecker {
  readonly history: HistoryIndex;

  constructor(history: WatchHistory | HistoryIndex) {
    this.history = history instanceof HistoryIndex ? history : new HistoryIndex(history);
  }

  check(record: WatchRecord, position = 0): CheckResult {
    const violations: Violation[] = [];
    let omitted = 0;
    const watch = record.name ?? `#${position}`;
    const report: Report = (guarantee, revision, message) => {
      if (violations.length >= violationsPerWatchMax) return void omitted++;
      const at = revision === undefined ? '' : ` at revision ${revision}`;
      violations.push({ guarantee, watch, revision, message: `${guarantee}: watch ${watch}${at}: ${message}` });
    };
    checkRecord(this.history, record, report);
    return { ok: violations.length === 0, violations, omitted };
  }

  /** Each record against the history, then the records against each other (agreement). */
  checkAll(records: readonly WatchRecord[]): CheckResult {
    const results = records.map((record, i) => this.check(record, i));
    results.push(checkAgreement(records, this.history.compactions));
    const violations = results.flatMap((r) => r.violations);
    return { ok: violations.length === 0, violations, omitted: results.reduce((sum, r) => sum + r.omitted, 0) };
  }
}

/** Checks one watch record against a history. */
export function checkWatch(history: WatchHistory, record: WatchRecord): CheckResult {
  return new WatchChecker(history).check(record);
}

/** Checks every watch record of a run against its history. */
export function checkWatches(history: WatchHistory, records: readonly WatchRecord[]): CheckResult {
  return new WatchChecker(history).checkAll(records);
}

// ---------------------------------------------------------------------------------------------
// Agreement across streams

/** One stream's deliveries, as the agreement check compares them. */
interface Delivery {
  readonly watch: string;
  readonly params: WatchParams;
  /** Each revision's events in the order they arrived (a repeat of a (revision, key) left out), with their text. */
  readonly byRevision: ReadonlyMap<number, readonly Compared[]>;
  /** Revision -> its place in the order the stream first delivered revisions. */
  readonly position: ReadonlyMap<number, number>;
  /** Revisions in that order. */
  readonly order: readonly number[];
}

/** An event with the text two streams must agree on (made once per event, not per comparison). */
interface Compared {
  readonly event: WatchEvent;
  readonly text: string;
}

function deliveryOf(record: WatchRecord, index: number): Delivery {
  const byRevision = new Map<number, Compared[]>();
  const position = new Map<number, number>();
  const order: number[] = [];
  const seen = new Set<string>();
  for (const response of record.responses) {
    if (response.kind !== 'events') continue;
    for (const event of response.events) {
      const id = `${event.modRevision}/${keyId(event.key)}`;
      if (seen.has(id)) continue; // the unique guarantee's business
      seen.add(id);
      let list = byRevision.get(event.modRevision);
      if (list === undefined) {
        list = [];
        byRevision.set(event.modRevision, list);
        position.set(event.modRevision, order.length);
        order.push(event.modRevision);
      }
      list.push({ event, text: eventText(event) });
    }
  }
  return { watch: record.name ?? `#${index}`, params: record.params, byRevision, position, order };
}

/** An event's fields two streams must agree on (prevKv aside: compaction may remove it from one). */
function eventText(event: WatchEvent): string {
  const value = event.value === undefined ? '' : keyId(event.value);
  return `${showEvent(event)} value 0x${value} version ${event.version} createRevision ${event.createRevision}`;
}

/**
 * What `other` should show of `mine`'s events of one revision: those it watches too, less the
 * tombstones at a compaction revision (compaction removes them from a stream catching up).
 */
function comparable(events: readonly Compared[], otherParams: WatchParams, compactions: readonly Compaction[]): string[] {
  const kept = events.filter(({ event: e }) => watchMatches(e, otherParams) && !(e.type === 'delete' && compactions.some((c) => c.revision === e.modRevision)));
  return kept.map((e) => e.text);
}

/**
 * Agreement: every stream delivered the same events in the same order as every other. A revision
 * is compared with the first stream that delivered it; revisions in opposite orders are looked for
 * where a stream went back (rare), against every stream that delivered both.
 */
export function checkAgreement(records: readonly WatchRecord[], compactions: readonly Compaction[] = []): CheckResult {
  const deliveries = records.map(deliveryOf);
  const violations: Violation[] = [];
  const perWatch = new Map<string, number>();
  let omitted = 0;
  const report = (watch: string, revision: number, message: string): void => {
    const n = perWatch.get(watch) ?? 0;
    if (n >= violationsPerWatchMax) return void omitted++;
    perWatch.set(watch, n + 1);
    violations.push({ guarantee: 'agreement', watch, revision, message: `agreement: watch ${watch} at revision ${revision}: ${message}` });
  };
  const first = new Map<number, Delivery>();
  for (const mine of deliveries) {
    for (const [revision, events] of mine.byRevision) {
      const reference = first.get(revision);
      if (reference === undefined) {
        first.set(revision, mine);
        continue;
      }
      const want = comparable(reference.byRevision.get(revision)!, mine.params, compactions);
      const got = comparable(events, reference.params, compactions);
      if (want.join('\n') !== got.join('\n')) {
        report(mine.watch, revision, `delivered [${got.join('; ')}], but watch ${reference.watch} delivered [${want.join('; ')}]`);
      }
    }
    checkCrossOrder(mine, deliveries, report);
  }
  return { ok: violations.length === 0, violations, omitted };
}

/** Where `mine` delivered a revision after a higher one, a stream that delivered the two the other way round disagrees. */
function checkCrossOrder(mine: Delivery, deliveries: readonly Delivery[], report: (watch: string, revision: number, message: string) => void): void {
  let highest = 0;
  for (const revision of mine.order) {
    if (revision < highest) {
      const other = deliveries.find(
        (d) => d !== mine && d.position.has(revision) && d.position.has(highest) && d.position.get(revision)! < d.position.get(highest)!,
      );
      if (other !== undefined) report(mine.watch, revision, `delivered after revision ${highest}, but watch ${other.watch} delivered it before revision ${highest}`);
    }
    highest = Math.max(highest, revision);
  }
}

function checkRecord(history: HistoryIndex, record: WatchRecord, report: Report): void {
  const start = record.params.startRevision ?? 0;
  assertRevision(start, 'start revision');
  checkShape(record, report);
  const created = record.responses.find((r) => r.kind === 'created');
  const createdHeader = created?.kind === 'created' ? created.headerRevision : undefined;
  /** The first revision the watch promises; undefined when neither the start nor the creation header is known. */
  const from = start > 0 ? start : createdHeader === undefined ? undefined : createdHeader + 1;
  const delivered = admitEvents(history, record, from, report);
  checkOrdered(delivered, report);
  checkAtomic(delivered, report);
  checkBookmarks(history, record, delivered, report);
  const compactedStart = checkCompaction(history, record, { start, from, createdHeader, delivered }, report);
  if (compactedStart) return; // the only right outcome was a cancel; gaps and first events are moot
  const firstChecked = checkFirstEvents(history, record, from, delivered, report);
  checkGaps(history, record, firstChecked, delivered, report);
}

/** The record's shape: created first, nothing after a cancel, sane headers, whole fragments. */
function checkShape(record: WatchRecord, report: Report): void {
  const { responses } = record;
  let fragmentOpen = false;
  responses.forEach((response, i) => {
    if (response.kind === 'created' && i !== 0) report('stream', undefined, `a second 'created' response (response ${i})`);
    if (response.kind !== 'created' && i === 0) report('stream', undefined, `the first response is '${response.kind}', not 'created'`);
    if (i > 0 && responses[i - 1]!.kind === 'canceled') report('stream', undefined, `response ${i} ('${response.kind}') arrived after the cancel`);
    if (fragmentOpen && response.kind !== 'events') {
      report('atomic', undefined, `a fragmented response is interrupted by a '${response.kind}' response (response ${i})`);
    }
    fragmentOpen = response.kind === 'events' && response.fragment === true;
    if (response.kind === 'events') checkEventsHeader(response, i, report);
  });
  if (fragmentOpen) report('atomic', undefined, 'the stream ended inside a fragmented response');
  const canceled = responses.some((r) => r.kind === 'canceled');
  if (canceled !== (record.end === 'canceled')) {
    report('stream', undefined, `the stream ended '${record.end}' but ${canceled ? 'has' : 'has no'} 'canceled' response`);
  }
}

function checkEventsHeader(response: Extract<WatchResponse, { kind: 'events' }>, i: number, report: Report): void {
  if (response.events.length === 0 && response.fragment !== true) report('stream', undefined, `response ${i} carries no events`);
  const highest = response.events.reduce((max, e) => Math.max(max, e.modRevision), 0);
  if (response.headerRevision < highest) {
    report('stream', highest, `response ${i} has header revision ${response.headerRevision} below its events' revision ${highest}`);
  }
}

/**
 * Looks every delivered event up in the history and admits those that belong to the watch:
 * unknown, below-start, unmatched and repeated events are reported and left out of the later
 * checks (so one fault yields one violation); admitted events have their contents checked.
 */
function admitEvents(history: HistoryIndex, record: WatchRecord, from: number | undefined, report: Report): Delivered[] {
  const admitted: Delivered[] = [];
  const seen = new Set<string>();
  let delivery = 0;
  record.responses.forEach((response, responseIndex) => {
    if (response.kind !== 'events') {
      delivery++; // a progress or cancel between fragments ends the delivery (checkShape reports it)
      return;
    }
    for (const event of response.events) {
      const revision = event.modRevision;
      const indexed = history.lookup(revision, event.key);
      const id = `${revision}/${keyId(event.key)}`;
      if (indexed === undefined) report('contents', revision, `${showEvent(event)} is not in the history`);
      else if (from !== undefined && revision < from) {
        report('resumable', revision, `${showEvent(event)} is below the watch's first revision ${from}`);
      } else if (!watchMatches(indexed.event, record.params)) {
        report('contents', revision, `${showEvent(indexed.event)} does not match the watch's range or filters`);
      } else if (seen.has(id)) report('unique', revision, `${showEvent(event)} was delivered twice (response ${responseIndex})`);
      else {
        seen.add(id);
        checkContents(event, indexed, record.params, history.prevKvMayBeCompacted(revision), report);
        admitted.push({ event, responseIndex, delivery, indexed });
      }
    }
    if (response.fragment !== true) delivery++;
  });
  return admitted;
}

function checkContents(event: WatchEvent, indexed: IndexedEvent, params: WatchParams, prevKvMayBeGone: boolean, report: Report): void {
  const truth = indexed.event;
  const revision = indexed.revision;
  const name = showEvent(truth);
  if (event.type !== truth.type) return report('contents', revision, `delivered as a ${event.type}, but the history has ${name}`);
  if (truth.type === 'put') {
    const wrong = [
      bytesEqual(event.value, truth.value) ? undefined : 'value',
      event.version === truth.version ? undefined : `version ${event.version} (history ${truth.version})`,
      event.createRevision === truth.createRevision ? undefined : `createRevision ${event.createRevision} (history ${truth.createRevision})`,
      event.lease === undefined || truth.lease === undefined || event.lease === truth.lease ? undefined : `lease ${event.lease} (history ${truth.lease})`,
    ].filter((w) => w !== undefined);
    if (wrong.length > 0) report('contents', revision, `${name} has the wrong ${wrong.join(', ')}`);
  }
  if (params.prevKv !== true) {
    if (event.prevKv !== undefined) report('contents', revision, `${name} carries a prevKv the watch did not ask for`);
    return;
  }
  if (event.prevKv === undefined && prevKvMayBeGone) return;
  const problem = prevKvProblem(event.prevKv, indexed.expectedPrevKv);
  if (problem !== undefined) report('reliable', revision, `${name} has a wrong prevKv: ${problem}`);
}

function prevKvProblem(got: WatchKeyValue | undefined, want: WatchKeyValue | undefined): string | undefined {
  if (want === undefined) return got === undefined ? undefined : `the key was not live before, but prevKv is version ${got.version} (modRevision ${got.modRevision})`;
  const wantText = `version ${want.version} (modRevision ${want.modRevision})`;
  if (got === undefined) return `missing; the key's previous version is ${wantText}`;
  const same =
    bytesEqual(got.key, want.key) &&
    bytesEqual(got.value, want.value) &&
    got.createRevision === want.createRevision &&
    got.modRevision === want.modRevision &&
    got.version === want.version &&
    (got.lease === undefined || want.lease === undefined || got.lease === want.lease);
  return same ? undefined : `got version ${got.version} (modRevision ${got.modRevision}), the history has ${wantText}`;
}

/** Ordered: (modRevision, position in the revision) strictly increases over admitted events. */
function checkOrdered(delivered: readonly Delivered[], report: Report): void {
  let last: IndexedEvent | undefined;
  const reported = new Set<number>();
  for (const { indexed } of delivered) {
    const behind = last !== undefined && (indexed.revision < last.revision || (indexed.revision === last.revision && indexed.position < last.position));
    if (behind && !reported.has(indexed.revision)) {
      reported.add(indexed.revision);
      const what = indexed.revision < last!.revision ? `after revision ${last!.revision}` : `after ${showEvent(last!.event)} of the same revision, against the history's order`;
      report('ordered', indexed.revision, `${showEvent(indexed.event)} arrived ${what}`);
    }
    if (!behind) last = indexed;
  }
}

/** Atomic: every admitted event of a revision came in the same delivery. */
function checkAtomic(delivered: readonly Delivered[], report: Report): void {
  const deliveryOf = new Map<number, Delivered>();
  const reported = new Set<number>();
  for (const d of delivered) {
    const first = deliveryOf.get(d.indexed.revision);
    if (first === undefined) deliveryOf.set(d.indexed.revision, d);
    else if (first.delivery !== d.delivery && !reported.has(d.indexed.revision)) {
      reported.add(d.indexed.revision);
      report('atomic', d.indexed.revision, `the revision's events are split across responses ${first.responseIndex} and ${d.responseIndex}`);
    }
  }
}

/** Bookmarkable: after a progress notification at H, nothing at or below H arrives. */
function checkBookmarks(history: HistoryIndex, record: WatchRecord, delivered: readonly Delivered[], report: Report): void {
  let bookmark = 0;
  let bookmarkAt = -1;
  let next = 0; // index into delivered, which is in response order
  const reported = new Set<number>();
  record.responses.forEach((response, i) => {
    for (; next < delivered.length && delivered[next]!.responseIndex === i; next++) {
      const revision = delivered[next]!.indexed.revision;
      if (revision <= bookmark && !reported.has(revision)) {
        reported.add(revision);
        report('bookmarkable', revision, `an event arrived (response ${i}) after the progress notification at revision ${bookmark} (response ${bookmarkAt})`);
      }
    }
    if (response.kind !== 'progress') return;
    if (response.headerRevision > history.head) {
      report('bookmarkable', response.headerRevision, `progress notification beyond the history's last revision ${history.head}`);
    }
    if (response.headerRevision > bookmark) [bookmark, bookmarkAt] = [response.headerRevision, i];
  });
}

interface CompactionFacts {
  readonly start: number;
  readonly from: number | undefined;
  readonly createdHeader: number | undefined;
  readonly delivered: readonly Delivered[];
}

/**
 * Resumable, compaction half: a cancel with a compactRevision must name a compaction at or above
 * the watch's first revision and past everything delivered; a watch starting below a compaction
 * in force when it was created must be canceled, not deliver. Returns whether the start was
 * compacted (so the remaining checks do not apply).
 */
function checkCompaction(history: HistoryIndex, record: WatchRecord, facts: CompactionFacts, report: Report): boolean {
  const { start, from, createdHeader, delivered } = facts;
  const inForce = history.compactions.filter(
    (c) => c.atRevision === undefined || (createdHeader !== undefined && c.atRevision < createdHeader),
  );
  const forcing = start > 0 ? inForce.reduce((max, c) => (c.revision > start ? Math.max(max, c.revision) : max), 0) : 0;
  const cancel = record.responses.find((r) => r.kind === 'canceled');
  const compactRevision = cancel?.kind === 'canceled' ? (cancel.compactRevision ?? 0) : 0;
  const lastDelivered = delivered.at(-1)?.indexed.revision ?? 0;
  if (compactRevision > 0) {
    const problems = [
      history.compactions.some((c) => c.revision === compactRevision) ? undefined : 'no compaction at that revision is in the history',
      from === undefined || compactRevision >= from ? undefined : `it is below the watch's first revision ${from}, which was not compacted`,
      compactRevision > lastDelivered ? undefined : `revision ${lastDelivered} was already delivered`,
      compactRevision >= forcing ? undefined : `the compaction at ${forcing} was in force when the watch was created`,
    ].filter((p) => p !== undefined);
    if (problems.length > 0) report('resumable', compactRevision, `canceled as compacted at ${compactRevision}, but ${problems.join('; ')}`);
  }
  if (forcing === 0) return false;
  if (delivered.length > 0) {
    report('resumable', start, `the start revision was compacted (compaction at ${forcing}), yet the watch delivered events instead of a cancel with compactRevision`);
  }
  return true;
}

/**
 * Resumable, first-events half: a watch whose first revision is known (its start, or its creation
 * header + 1) first delivers the first matching history revision at or after it; a resumed watch
 * starts where the client left off. Returns the first revision the gap check should cover.
 */
function checkFirstEvents(
  history: HistoryIndex,
  record: WatchRecord,
  from: number | undefined,
  delivered: readonly Delivered[],
  report: Report,
): number | undefined {
  const start = record.params.startRevision ?? 0;
  if (record.resumedFrom !== undefined && record.resumedFrom !== start) {
    report('resumable', record.resumedFrom, `resumed at ${record.resumedFrom} but the watch asked to start at ${start}`);
  }
  const firstDelivered = delivered[0]?.indexed;
  if (from === undefined || firstDelivered === undefined) return from ?? firstDelivered?.revision;
  const expected = firstRequired(history, record.params, from, firstDelivered.revision - 1);
  if (expected === undefined) return from;
  // Delivered, only late: the ordered check reports that.
  if (delivered.some((d) => d.indexed === expected)) return from;
  const resumed = record.resumedFrom !== undefined ? 'resumed ' : '';
  report(
    'resumable',
    expected.revision,
    `the ${resumed}watch from revision ${from} skipped its first event ${showEvent(expected.event)} at revision ${expected.revision}; its first delivered event is at revision ${firstDelivered.revision}`,
  );
  return firstDelivered.revision; // the skipped span is reported here, not again as gaps
}

/** The first matching event in [from, to] that compaction cannot have removed. */
function firstRequired(history: HistoryIndex, params: WatchParams, from: number, to: number): IndexedEvent | undefined {
  for (const revision of history.between(from, to)) {
    const match = revision.events.find((e) => watchMatches(e.event, params) && !history.mayBeCompacted(e));
    if (match !== undefined) return match;
  }
  return undefined;
}

/**
 * Reliable: every matching history event from the first covered revision to the last delivered
 * or bookmarked revision was delivered.
 */
function checkGaps(history: HistoryIndex, record: WatchRecord, first: number | undefined, delivered: readonly Delivered[], report: Report): void {
  if (first === undefined) return;
  const lastDelivered = delivered.at(-1)?.indexed.revision ?? 0;
  const lastBookmark = record.responses.reduce((max, r) => (r.kind === 'progress' ? Math.max(max, r.headerRevision) : max), 0);
  const last = Math.min(history.head, Math.max(lastDelivered, lastBookmark));
  const got = new Set(delivered.map((d) => `${d.indexed.revision}/${keyId(d.event.key)}`));
  for (const revision of history.between(first, last)) {
    const missing = revision.events.filter(
      (e) => watchMatches(e.event, record.params) && !history.mayBeCompacted(e) && !got.has(`${revision.revision}/${keyId(e.event.key)}`),
    );
    if (missing.length === 0) continue;
    const bound = lastBookmark >= revision.revision && lastBookmark >= lastDelivered ? `progress notification at ${lastBookmark}` : `delivered revision ${lastDelivered}`;
    report('reliable', revision.revision, `${missing.map((e) => showEvent(e.event)).join(', ')} never delivered, though the watch covers ${first}..${last} (up to ${bound})`);
  }
}
