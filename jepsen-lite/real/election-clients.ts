/**
 * The election workload's clients (real mode), all in this process, each with its own gRPC
 * channels: N **candidates** campaigning on one etcd election and a few **observers** watching it.
 *
 * A candidate's cycle:
 * 1. grants a lease (`leaseTtlSecondsRequested`; the server may raise it) and keeps it alive on a
 *    LeaseKeepAlive stream of its own (`LeaseKeeper`, shared with the lock workload);
 * 2. `Campaign(name, lease, value)` — waits until its key leads; the history records the leader
 *    key, its create revision and the header's revision;
 * 3. leads for `proclaimsPerTermMin`–`Max` proclaims of new values, one every
 *    `proclaimIntervalMs`, each only while its lease is alive as far as it knows (a careful
 *    leader); a proclaim refused with "not leader" ends the term, one whose outcome is unknown
 *    moves the leader to another member;
 * 4. ends the term one of three ways, drawn from the seed: **resign** (Resign, then the lease is
 *    revoked), **lapse** (stops renewing and walks away; the key goes when the lease expires), or
 *    **stale** (a "GC pause": stops renewing for 2.5–3.5 lease TTLs, recorded as a `leader-pause`
 *    fault window, then proclaims once more as if it still led — the store must refuse it unless
 *    the lease somehow outlived the pause).
 *
 * An observer holds one `Observe` stream, starting on its own member (observer i on member i);
 * when the stream breaks or ends it reopens it on the next member. Observe has no start revision,
 * so each stream is recorded as a segment of its own (`ObserverSegment`): what changed between two
 * segments is the observer's gap, which the check allows it to have missed.
 *
 * An operation that never returned makes its candidate a new process for the history, as in the
 * other workloads.
 */
import { type Decoded, type EtcdChannel, type MethodCodec, type RpcError, longsAsStrings, methodCodec } from '../../src/client/index.js';
import type { WireLeaderKey } from '../../src/etcd-proto.js';
import type { ObservedLeader, ObserverSegment } from '../check/index.js';
import type { ElectionInput, ElectionOutput, FaultWindow, Operation } from '../history.js';
import { SeededPrng } from '../../raft/index.js';
import {
  type ElectionKeys,
  campaignRequest,
  describeError,
  electionKeys,
  electionName,
  electionValue,
  isNotLeader,
  leaderRequest,
  proclaimRequest,
  resignRequest,
} from '../workload/index.js';
import { type ClientCluster, type Invoked, memberChannel, opTimeoutMs, watchReopenPauseMs } from './clients.js';
import { type Link, type Me as ClientMe, Members, OperationRecorder, headerRevision, pause, revisionOf, runCycles } from './client-loop.js';
import { LeaseKeeper, grantLease, revokeLease } from './lease-keeper.js';

/** Campaign's deadline: long enough to wait behind a few terms and a lapsed lease. */
export const campaignWaitMsMax = 10_000;
export const proclaimsPerTermMin = 2;
export const proclaimsPerTermMax = 4;
/** Pause between a leader's proclaims. */
export const proclaimIntervalMs = 100;
/** Observers per run (each starts on its own member, wrapping around). */
export const electionObservers = 3;
/**
 * How a term ends, with relative weights. A lapse or a stale leader leaves the election without a
 * leader until the lease expires (a TTL or more), a resign hands over at once: mostly resigns, so a
 * short run still sees many leader changes.
 */
export type TermEnd = 'resign' | 'lapse' | 'stale';
export const termEndWeights: Readonly<Record<TermEnd, number>> = { resign: 7, lapse: 2, stale: 1 };
/** A stale leader pauses this many lease TTLs: long past its lease, however late the store expires it. */
export const leaderPauseTtlFactorMin = 2.5;
export const leaderPauseTtlFactorMax = 3.5;

const campaignCodec = methodCodec('v3electionpb.Election', 'Campaign', longsAsStrings);
const proclaimCodec = methodCodec('v3electionpb.Election', 'Proclaim', longsAsStrings);
const resignCodec = methodCodec('v3electionpb.Election', 'Resign', longsAsStrings);
const observeCodec = methodCodec('v3electionpb.Election', 'Observe', longsAsStrings);

const text = (bytes: unknown): string => Buffer.from((bytes as Uint8Array | undefined) ?? []).toString('utf8');

export interface ElectionClientsOptions {
  readonly cluster: ClientCluster;
  readonly keyPrefix: string;
  readonly candidates: number;
  readonly observers: number;
  /** Draws each candidate's term lengths and endings. */
  readonly seed: number;
  /** ms since the run began. */
  readonly now: () => number;
  readonly onOperation?: (op: Operation) => void;
  readonly log?: (message: string) => void;
}

export interface ElectionRecorded {
  readonly operations: Operation[];
  readonly observers: ObserverSegment[];
  /** The stale leaders' pauses (`leader-pause` fault windows). */
  readonly pauses: FaultWindow[];
}

/** A candidate: a client (`client-loop.ts`) with its own draws of term lengths and endings. */
interface Me extends ClientMe {
  readonly random: SeededPrng;
}

interface Led {
  readonly leader: WireLeaderKey;
  /** As text, for the history. */
  readonly key: string;
  readonly rev: number;
  readonly ttlMs: number;
}

export class ElectionClients {
  private valueSeq = 0;
  private readonly operations: Operation[] = [];
  private readonly members: Members;
  private readonly recorder: OperationRecorder;
  private readonly segments: ObserverSegment[] = [];
  private readonly pauses: FaultWindow[] = [];
  private readonly keys: ElectionKeys;

  constructor(private readonly options: ElectionClientsOptions) {
    this.keys = electionKeys(options.keyPrefix);
    this.members = new Members(options.cluster);
    this.recorder = new OperationRecorder({
      now: options.now,
      members: this.members,
      processStride: options.candidates,
      onComplete: (op) => {
        this.operations.push(op);
        options.onOperation?.(op);
      },
    });
  }

  /** The election's key prefix (`name/`), for the check. */
  get prefix(): string {
    return this.keys.prefix;
  }

  async run(signal: AbortSignal): Promise<ElectionRecorded> {
    const random = new SeededPrng(this.options.seed).fork();
    const workers: Promise<void>[] = [];
    for (let p = 0; p < this.options.candidates; p++) workers.push(this.candidate({ process: p, member: p, random: random.fork() }, signal));
    for (let o = 0; o < this.options.observers; o++) workers.push(this.observer(o, signal));
    await Promise.all(workers);
    return {
      operations: [...this.operations].sort((a, b) => a.id - b.id),
      observers: [...this.segments].sort((a, b) => a.observer - b.observer || a.segment - b.segment),
      pauses: [...this.pauses].sort((a, b) => a.start - b.start),
    };
  }

  // ---- Candidates ------------------------------------------------------------------------------

  private candidate(me: Me, signal: AbortSignal): Promise<void> {
    return runCycles(me, this.members, signal, (link) => this.cycle(me, link, signal));
  }

  private drawEnd(random: SeededPrng): TermEnd {
    const total = termEndWeights.resign + termEndWeights.lapse + termEndWeights.stale;
    let draw = random.nextInt(total);
    for (const end of ['resign', 'lapse', 'stale'] as const) {
      if (draw < termEndWeights[end]) return end;
      draw -= termEndWeights[end];
    }
    throw new TypeError('unreachable: the weights cover every draw');
  }

  /** One grant–campaign–lead–end cycle; false when something failed (the candidate then moves to another member). */
  private async cycle(me: Me, link: Link, signal: AbortSignal): Promise<boolean> {
    const { now, cluster } = this.options;
    const grantedAt = now();
    const granted = await grantLease(link.channel);
    if (granted === undefined) return false;
    const { lease, ttlMs } = granted;
    const keeper = new LeaseKeeper({ cluster, member: me.member, lease, ttlMs, now, grantedAt });
    let revoke = true;
    try {
      const led = await this.campaign(me, link.channel, lease, ttlMs, signal);
      if (led === undefined) return false;
      const end = this.drawEnd(me.random);
      const term = await this.lead(me, link, led, keeper, signal);
      if (signal.aborted) return true;
      if (end === 'lapse') {
        revoke = false;
        return term !== 'unknown';
      }
      if (end === 'stale') {
        revoke = false;
        keeper.stop();
        await this.staleProclaim(me, link.channel, led, signal);
        return true;
      }
      return (await this.resign(me, link.channel, led)) && term !== 'unknown';
    } finally {
      keeper.stop();
      // Frees the key if Resign did not; an expired lease answers "not found".
      if (revoke) await revokeLease(link.channel, lease);
    }
  }

  private async campaign(me: Me, channel: EtcdChannel, lease: string, ttlMs: number, signal: AbortSignal): Promise<Led | undefined> {
    const value = electionValue(me.process, ++this.valueSeq);
    const input: ElectionInput = { f: 'campaign', election: electionName, value };
    let leader: WireLeaderKey | undefined;
    const result = await this.invoke(me, input, async () => {
      const response = await channel.unary(campaignCodec, campaignRequest(this.keys, lease, value), { timeoutMs: campaignWaitMsMax, signal });
      const wire = response.leader as { name?: Uint8Array; key?: Uint8Array; rev?: string; lease?: string } | null | undefined;
      if (wire === undefined || wire === null) throw new Error('Campaign answered without a leader key');
      const rev = revisionOf(wire.rev, 'leader key');
      leader = { name: this.keys.name, key: Buffer.from(wire.key ?? []), rev: String(rev), lease: String(wire.lease ?? lease) };
      return { f: 'campaign', key: text(wire.key), rev, revision: headerRevision(response) } satisfies ElectionOutput;
    });
    if (result.status !== 'ok' || result.output.f !== 'campaign' || leader === undefined) return undefined;
    return { leader, key: result.output.key, rev: result.output.rev, ttlMs };
  }

  /** The term: proclaims while the lease lives. `unknown`: a proclaim's outcome is unknown on every member tried. */
  private async lead(me: Me, link: Link, led: Led, keeper: LeaseKeeper, signal: AbortSignal): Promise<'led' | 'lost' | 'unknown'> {
    const { now } = this.options;
    const proclaims = proclaimsPerTermMin + me.random.nextInt(proclaimsPerTermMax - proclaimsPerTermMin + 1);
    for (let done = 0; done < proclaims && !signal.aborted; ) {
      if (!keeper.alive(now())) return 'lost';
      const result = await this.proclaim(me, link.channel, led);
      if (result.status === 'ok') {
        done++;
        await pause(proclaimIntervalMs, signal);
        continue;
      }
      if (result.status === 'fail' && isNotLeader(result.error)) return 'lost';
      // Its member is down or cut off: go on through another.
      if (!this.members.failover(me, link)) return result.status === 'info' ? 'unknown' : 'lost';
    }
    return 'led';
  }

  private proclaim(me: Me, channel: EtcdChannel, led: Led): Promise<Invoked<ElectionOutput>> {
    const value = electionValue(me.process, ++this.valueSeq);
    const input: ElectionInput = { f: 'proclaim', election: electionName, key: led.key, rev: led.rev, value };
    return this.invoke(me, input, async () => {
      const response = await channel.unary(proclaimCodec, proclaimRequest(led.leader, value), { timeoutMs: opTimeoutMs });
      return { f: 'proclaim', revision: headerRevision(response) } satisfies ElectionOutput;
    });
  }

  /** A leader's "GC pause" past its lease, then one more proclaim as if it still led. */
  private async staleProclaim(me: Me, channel: EtcdChannel, led: Led, signal: AbortSignal): Promise<void> {
    const { now, log } = this.options;
    const factor = leaderPauseTtlFactorMin + me.random.nextFloat() * (leaderPauseTtlFactorMax - leaderPauseTtlFactorMin);
    const durationMs = Math.ceil(factor * led.ttlMs);
    const description = `process ${me.process} leading with ${led.key} (created at ${led.rev}) stops for ${durationMs} ms (lease TTL ${led.ttlMs / 1000} s): no renewals, then proclaims as if it still led`;
    const start = now();
    log?.(`leader pause: ${description}`);
    await pause(durationMs, signal);
    this.pauses.push({ kind: 'leader-pause', start, end: now(), description });
    if (!signal.aborted) await this.proclaim(me, channel, led);
  }

  private async resign(me: Me, channel: EtcdChannel, led: Led): Promise<boolean> {
    const input: ElectionInput = { f: 'resign', election: electionName, key: led.key, rev: led.rev };
    const result = await this.invoke(me, input, async () => {
      const response = await channel.unary(resignCodec, resignRequest(led.leader), { timeoutMs: opTimeoutMs });
      return { f: 'resign', revision: headerRevision(response) } satisfies ElectionOutput;
    });
    return result.status === 'ok';
  }

  /** Runs one operation and records it. "not leader" proves a campaign or proclaim wrote nothing (`fail`). */
  private invoke(me: Me, input: ElectionInput, run: () => Promise<ElectionOutput>): Promise<Invoked<ElectionOutput>> {
    return this.recorder.invoke(me, input, run, (error) => (input.f !== 'resign' && isNotLeader(error) ? { status: 'fail', error: describeError(error) } : undefined));
  }

  // ---- Observers -------------------------------------------------------------------------------

  private async observer(index: number, signal: AbortSignal): Promise<void> {
    let member = index;
    for (let segment = 0; !signal.aborted; segment++) {
      const node = this.members.name(member);
      const opened = this.options.now();
      const stream = await this.observeOnce(node, signal);
      this.segments.push({ observer: index, segment, node, opened, closed: this.options.now(), ...stream });
      if (signal.aborted) break;
      member++;
      await pause(watchReopenPauseMs, signal);
    }
  }

  /** One Observe stream until it breaks, ends, or the run ends. */
  private observeOnce(node: string, signal: AbortSignal): Promise<Pick<ObserverSegment, 'end' | 'error' | 'leaders'>> {
    const { now } = this.options;
    const channel = memberChannel(this.options.cluster.endpoint(node));
    const leaders: ObservedLeader[] = [];
    return new Promise((resolve) => {
      const call = channel.serverStream(observeCodec as MethodCodec<Decoded>, leaderRequest(this.keys));
      let finished = false;
      const finish = (end: ObserverSegment['end'], error?: string): void => {
        if (finished) return;
        finished = true;
        signal.removeEventListener('abort', cancel);
        call.cancel();
        channel.close();
        resolve({ end, ...(error === undefined ? {} : { error }), leaders });
      };
      const cancel = (): void => finish('client-closed');
      call.on('data', (response: Decoded) => {
        const kv = response.kv as { key?: Uint8Array; value?: Uint8Array; create_revision?: string; mod_revision?: string } | null | undefined;
        if (kv === undefined || kv === null) return;
        try {
          leaders.push({
            at: now(),
            revision: headerRevision(response),
            key: text(kv.key),
            createRevision: revisionOf(kv.create_revision, 'observed leader'),
            modRevision: revisionOf(kv.mod_revision, 'observed leader'),
            value: text(kv.value),
          });
        } catch (error) {
          // A response the check cannot read ends the stream, said so in the record.
          finish('broken', `unreadable response: ${(error as Error).message}`);
        }
      });
      call.on('error', (error: RpcError) => finish(signal.aborted ? 'client-closed' : 'broken', describeError(error)));
      call.on('end', () => finish(signal.aborted ? 'client-closed' : 'ended'));
      if (signal.aborted) cancel();
      else signal.addEventListener('abort', cancel, { once: true });
    });
  }
}
