/**
 * Simulated lease holders of `dkv jepsen sim --workload lease`, acting as etcd clients holding
 * leases do: each holder grants a lease (the id chosen by the client and carried in the grant,
 * as the server carries the one it picks), attaches a key to it, and renews it through some node
 * every TTL/3 — switching to another node and renewing at once when a call fails or goes
 * unanswered, as the etcd client reopens its keep-alive stream elsewhere. Each lease is kept
 * alive until the clients stop, abandoned at some point (the holder stops renewing: a crashed
 * client), or released (revoked, as a client's Close does); then the holder takes a new one.
 *
 * A request travels to a node (waiting while the node is paused), the node's runtime proposes
 * the command, and the answer travels back once that node applied it — what the server's Lease
 * service answers. A renewal is acknowledged when it renewed the lease (TTL > 0); the holder
 * believes its lease valid until the send time of its last acknowledged grant or renewal plus the
 * TTL. Every request is recorded in simulated real time for the checker (lease-check.ts).
 *
 * Holders have faults of their own, drawn from the seed: cut from every node, or reaching only a
 * minority of them (the holder cannot reach a quorum), and paused (a client's GC pause), for
 * windows up to longer than a TTL; they heal with the cluster.
 */
import type { SeededPrng } from '../../../raft/index.js';
import { KvCommandKind, kvCommand, kvOutcome } from '../../../src/engines/kv/index.js';
import type { EngineCommand } from '../../../src/engines/index.js';
import { grantCommand, leaseOutcome, renewCommand, revokeCommand } from '../../../src/engines/lease/index.js';
import { etcdType } from '../../../src/etcd-proto.js';
import type { RuntimeErrorCode } from '../../../src/runtime/index.js';
import type { FaultWindow } from '../../history.js';
import type { SimCluster } from '../cluster.js';
import { clientLinkDelayMsMax, clientLinkDelayMsMin } from './clients.js';

/** The TTLs holders ask for (s): etcd's minimum for a 1 s election timeout is 2. */
export const leaseTtlSecondsChoices: readonly number[] = [2, 3, 4, 5];
/** A keep-alive every TTL / this (etcd's client renews at a third of the TTL). */
export const leaseRenewalsPerTtl = 3;
/** A grant, attach or revoke unanswered after this long (simulated ms) is retried on another node. */
export const leaseRequestTimeoutMs = 1000;
/** After a refusal the holder waits this long before trying another node. */
export const leaseHolderBackoffMs = 50;
/** Percent of leases kept alive until the clients stop; of abandoned ones; the rest are released. */
export const leaseKeepPercent = 40;
export const leaseAbandonPercent = 40;
/** Before a new lease, a holder waits up to this many of its TTLs. */
const newLeaseGapTtlsMax = 0.5;
/** An abandoned or released lease is renewed for [0.5, this] of its TTLs first. */
const leaseLifetimeTtlsMax = 2;
/** Holder fault windows: quiet gaps and window lengths (simulated ms); windows may outlast a TTL. */
export const holderFaultGapMsMin = 500;
export const holderFaultGapMsMax = 3000;
export const holderFaultWindowMsMin = 300;
export const holderFaultWindowMsMax = 6000;

export const holderFaultKinds = ['holder-isolate', 'holder-minority', 'holder-pause'] as const;
export type HolderFaultKind = (typeof holderFaultKinds)[number];

/** What a lease's holder did with it. `orphan`: a grant attempt the holder gave up on (it may still apply). */
export type LeaseBehaviour = 'keep' | 'abandon' | 'release' | 'orphan';
export type LeaseRequestKind = 'grant' | 'renew' | 'attach' | 'revoke';
/**
 * `ok`: done (a renewal that renewed); `gone`: the lease does not exist (a renewal answered TTL
 * 0, an attach or revoke answered lease-not-found); `refused`: a runtime refusal; `timeout`: no
 * answer in time (it may still apply).
 */
export type LeaseRequestResult = 'ok' | 'gone' | 'refused' | 'timeout';

export interface LeaseRequest {
  readonly id: number;
  readonly holder: number;
  /** The lease id (decimal). */
  readonly lease: string;
  readonly kind: LeaseRequestKind;
  readonly node: number;
  /** Simulated ms. */
  readonly sent: number;
  answered?: number;
  /** Absent: no answer and no timeout yet when the run ended. */
  result?: LeaseRequestResult;
  error?: string;
}

export interface HeldLease {
  readonly lease: string;
  readonly holder: number;
  readonly ttlMs: number;
  behaviour: LeaseBehaviour;
  /** When the holder stopped renewing it; absent while it still renews. */
  stoppedAt?: number;
  stopReason?: 'abandoned' | 'released' | 'lost' | 'clients stopped' | 'grant unanswered';
}

interface ActiveLease {
  readonly id: bigint;
  readonly record: HeldLease;
  readonly intervalMs: number;
  /** Abandoned or released at this time (keep: never, until the clients stop). */
  readonly keepUntil: number;
  retrying: boolean;
  attached: boolean;
}

interface Holder {
  readonly index: number;
  node: number;
  current: ActiveLease | undefined;
  nextLease: number;
  paused: boolean;
  readonly parked: Array<() => void>;
  /** Nodes the holder can reach (undefined: all). */
  reach: ReadonlySet<number> | undefined;
}

const PutRequestType = etcdType('etcdserverpb.PutRequest');

/** The key holder `index` attaches to its leases. */
export function holderKey(keyPrefix: string, index: number): string {
  return `${keyPrefix}lease-holder-${index}`;
}

export interface LeaseHoldersOptions {
  readonly cluster: SimCluster;
  readonly shard: number;
  readonly random: SeededPrng;
  readonly faultRandom: SeededPrng;
  readonly holders: number;
  readonly keyPrefix: string;
  /** The holder fault kinds this run injects. */
  readonly faultKinds: readonly HolderFaultKind[];
}

export class LeaseHolders {
  readonly requests: LeaseRequest[] = [];
  readonly leases = new Map<string, HeldLease>();
  readonly windows: FaultWindow[] = [];
  /** Requests are sent only before this simulated time; then every holder stops. */
  issueUntil = Number.POSITIVE_INFINITY;
  private readonly holders: Holder[] = [];
  private readonly nodeIds: number[];
  private faultsOver = false;
  private openFault: { readonly kind: HolderFaultKind; readonly start: number; readonly description: string; readonly undo: () => void } | undefined;

  constructor(private readonly o: LeaseHoldersOptions) {
    this.nodeIds = [...o.cluster.nodes.keys()].sort((a, b) => a - b);
    for (let index = 0; index < o.holders; index++) {
      this.holders.push({ index, node: this.pickNode(), current: undefined, nextLease: 1, paused: false, parked: [], reach: undefined });
    }
  }

  start(): void {
    for (const h of this.holders) this.later(h, this.o.random.nextInt(100), () => this.grant(h));
  }

  /** Every holder stops renewing (the clients stop); leases still held are left to expire. */
  stop(): void {
    const now = this.o.cluster.now;
    this.issueUntil = Math.min(this.issueUntil, now);
    for (const h of this.holders) {
      if (h.current !== undefined) this.finish(h, 'clients stopped');
    }
  }

  // ---- Time, pauses and reachability ------------------------------------------------------------

  private pickNode(except?: number): number {
    const choices = except === undefined || this.nodeIds.length === 1 ? this.nodeIds : this.nodeIds.filter((id) => id !== except);
    return choices[this.o.random.nextInt(choices.length)]!;
  }

  /** Runs `run` as work of holder `h` after `delayMs` (held while the holder is paused). */
  private later(h: Holder, delayMs: number, run: () => void): void {
    this.o.cluster.at(delayMs, `holder ${h.index}`, () => this.asHolder(h, run));
  }

  private asHolder(h: Holder, run: () => void): void {
    if (h.paused) h.parked.push(run);
    else run();
  }

  private linkDelay(): number {
    return clientLinkDelayMsMin + this.o.random.nextInt(clientLinkDelayMsMax - clientLinkDelayMsMin + 1);
  }

  private reaches(h: Holder, node: number): boolean {
    return h.reach === undefined || h.reach.has(node);
  }

  // ---- Requests ---------------------------------------------------------------------------------

  /**
   * Sends `command` about lease `id` to the holder's node; `answer` hears the result once (the
   * answer, a refusal, or the timeout), as work of the holder.
   */
  private send(h: Holder, kind: LeaseRequestKind, id: bigint, command: EngineCommand, timeoutMs: number, answer: (result: LeaseRequestResult, request: LeaseRequest) => void): void {
    const c = this.o.cluster;
    const node = h.node;
    const request: LeaseRequest = { id: this.requests.length, holder: h.index, lease: id.toString(), kind, node, sent: c.now };
    this.requests.push(request);
    const settle = (result: LeaseRequestResult, error?: string): void => {
      if (request.result !== undefined) return;
      request.result = result;
      request.answered = c.now;
      if (error !== undefined) request.error = error;
      this.asHolder(h, () => answer(result, request));
    };
    c.at(timeoutMs, `holder ${h.index} timeout`, () => settle('timeout', `no answer within ${timeoutMs} ms`));
    // A cut link loses the request (the holder hears nothing until its timeout).
    if (!this.reaches(h, node)) return;
    const reply = (result: LeaseRequestResult, error?: string): void => {
      c.at(this.linkDelay(), `answer ${request.id}`, () => {
        if (this.reaches(h, node)) settle(result, error);
      });
    };
    c.atNode(node, this.linkDelay(), `lease request ${request.id} at n${node}`, () => {
      const down = c.submit(node, this.o.shard, command, (code: RuntimeErrorCode | undefined, outcome: unknown) => {
        if (code !== undefined) reply('refused', code);
        else reply(...resultOf(kind, outcome));
      });
      if (down === 'down') reply('refused', `connection refused: n${node} is down`);
    });
  }

  // ---- A lease's life ------------------------------------------------------------------------

  private grant(h: Holder): void {
    const c = this.o.cluster;
    if (c.now >= this.issueUntil || h.current !== undefined) return;
    const id = (BigInt(h.index + 1) << 32n) | BigInt(h.nextLease++);
    const ttlSeconds = leaseTtlSecondsChoices[this.o.random.nextInt(leaseTtlSecondsChoices.length)]!;
    const record: HeldLease = { lease: id.toString(), holder: h.index, ttlMs: ttlSeconds * 1000, behaviour: 'orphan' };
    this.leases.set(record.lease, record);
    this.send(h, 'grant', id, grantCommand(id, ttlSeconds), leaseRequestTimeoutMs, (result) => {
      if (result !== 'ok') {
        // The attempt may still apply: that lease is an orphan nobody renews. The next attempt
        // takes a new id, as an etcd client asking the server for one gets a new one.
        record.stoppedAt = c.now;
        record.stopReason = 'grant unanswered';
        h.node = this.pickNode(h.node);
        this.later(h, leaseHolderBackoffMs, () => this.grant(h));
        return;
      }
      if (c.now >= this.issueUntil) {
        record.behaviour = 'abandon';
        record.stoppedAt = c.now;
        record.stopReason = 'clients stopped';
        return;
      }
      const draw = this.o.random.nextInt(100);
      record.behaviour = draw < leaseKeepPercent ? 'keep' : draw < leaseKeepPercent + leaseAbandonPercent ? 'abandon' : 'release';
      const lifetime = Math.round(record.ttlMs * (0.5 + this.o.random.nextFloat() * (leaseLifetimeTtlsMax - 0.5)));
      const lease: ActiveLease = {
        id,
        record,
        intervalMs: Math.floor(record.ttlMs / leaseRenewalsPerTtl),
        keepUntil: record.behaviour === 'keep' ? Number.POSITIVE_INFINITY : c.now + lifetime,
        retrying: false,
        attached: false,
      };
      h.current = lease;
      this.attach(h, lease);
      this.later(h, lease.intervalMs, () => this.keepAlive(h, lease));
    });
  }

  /** Puts the holder's key with the lease (retried on other nodes until done or the lease is gone). */
  private attach(h: Holder, lease: ActiveLease): void {
    if (h.current !== lease || this.o.cluster.now >= this.issueUntil) return;
    const put = PutRequestType.encode(
      PutRequestType.fromObject({ key: Buffer.from(holderKey(this.o.keyPrefix, h.index)), value: Buffer.from(lease.record.lease), lease: lease.record.lease }),
    ).finish();
    this.send(h, 'attach', lease.id, kvCommand(KvCommandKind.Put, put), leaseRequestTimeoutMs, (result) => {
      if (h.current !== lease) return;
      if (result === 'ok') lease.attached = true;
      else if (result === 'gone') this.finish(h, 'lost');
      else {
        h.node = this.pickNode(h.node);
        this.later(h, leaseHolderBackoffMs, () => this.attach(h, lease));
      }
    });
  }

  /** One keep-alive period: renew (or, past the lease's time, abandon or release it). */
  private keepAlive(h: Holder, lease: ActiveLease): void {
    const c = this.o.cluster;
    if (h.current !== lease || c.now >= this.issueUntil) return;
    if (c.now >= lease.keepUntil) {
      if (lease.record.behaviour === 'release') this.release(h, lease);
      else this.finish(h, 'abandoned');
      return;
    }
    this.renew(h, lease);
    this.later(h, lease.intervalMs, () => this.keepAlive(h, lease));
  }

  private renew(h: Holder, lease: ActiveLease): void {
    // Unanswered for a whole keep-alive period: the stream is taken to be broken.
    this.send(h, 'renew', lease.id, renewCommand([lease.id]), lease.intervalMs, (result) => {
      if (h.current !== lease || result === 'ok') return;
      if (result === 'gone') {
        this.finish(h, 'lost');
        return;
      }
      // Broken: renew at once through another node (one retry at a time; the period goes on).
      h.node = this.pickNode(h.node);
      if (lease.retrying) return;
      lease.retrying = true;
      this.later(h, leaseHolderBackoffMs, () => {
        lease.retrying = false;
        if (h.current === lease && this.o.cluster.now < this.issueUntil && this.o.cluster.now < lease.keepUntil) this.renew(h, lease);
      });
    });
  }

  /** Revokes the lease (retried until answered), then takes a new one. */
  private release(h: Holder, lease: ActiveLease): void {
    const c = this.o.cluster;
    if (lease.record.stoppedAt === undefined) {
      lease.record.stoppedAt = c.now;
      lease.record.stopReason = 'released';
    }
    if (c.now >= this.issueUntil) {
      h.current = undefined;
      return;
    }
    this.send(h, 'revoke', lease.id, revokeCommand(lease.id), leaseRequestTimeoutMs, (result) => {
      if (h.current !== lease) return;
      if (result === 'ok' || result === 'gone') {
        h.current = undefined;
        this.later(h, this.newLeaseGap(lease), () => this.grant(h));
        return;
      }
      h.node = this.pickNode(h.node);
      this.later(h, leaseHolderBackoffMs, () => this.release(h, lease));
    });
  }

  /** The holder stops renewing its lease; unless the clients stopped, it takes a new one later. */
  private finish(h: Holder, reason: 'abandoned' | 'lost' | 'clients stopped'): void {
    const lease = h.current;
    if (lease === undefined) return;
    h.current = undefined;
    if (lease.record.stoppedAt === undefined) {
      lease.record.stoppedAt = this.o.cluster.now;
      lease.record.stopReason = reason;
    }
    if (reason !== 'clients stopped') this.later(h, this.newLeaseGap(lease), () => this.grant(h));
  }

  private newLeaseGap(lease: ActiveLease): number {
    return this.o.random.nextInt(Math.round(lease.record.ttlMs * newLeaseGapTtlsMax) + 1);
  }

  // ---- Holder faults ----------------------------------------------------------------------------

  /** Injects holder faults (one window at a time) until `untilMs`; they are recorded as fault windows. */
  startFaults(untilMs: number): void {
    const kinds = this.o.faultKinds;
    if (kinds.length === 0 || this.holders.length === 0) return;
    const random = this.o.faultRandom;
    const c = this.o.cluster;
    const between = (min: number, max: number): number => min + random.nextInt(max - min + 1);
    const next = (): void => {
      if (this.faultsOver || c.now >= untilMs) return;
      this.openFault = this.inject(kinds[random.nextInt(kinds.length)]!, this.holders[random.nextInt(this.holders.length)]!);
      const window = this.openFault;
      c.at(between(holderFaultWindowMsMin, holderFaultWindowMsMax), 'holder fault end', () => {
        if (this.openFault !== window) return;
        this.closeFault();
        c.at(between(holderFaultGapMsMin, holderFaultGapMsMax), 'holder fault', next);
      });
    };
    c.at(between(holderFaultGapMsMin, holderFaultGapMsMax), 'holder fault', next);
  }

  /** Ends the open holder fault; none start after this. */
  healFaults(): void {
    this.faultsOver = true;
    this.closeFault();
  }

  private closeFault(): void {
    const open = this.openFault;
    if (open === undefined) return;
    this.openFault = undefined;
    open.undo();
    this.windows.push({ kind: open.kind, start: open.start, end: this.o.cluster.now, description: open.description });
  }

  private inject(kind: HolderFaultKind, h: Holder): { kind: HolderFaultKind; start: number; description: string; undo: () => void } {
    const c = this.o.cluster;
    const start = c.now;
    const record = (description: string): void => c.record(`fault ${kind}: ${description}`);
    switch (kind) {
      case 'holder-isolate': {
        h.reach = new Set();
        const description = `holder ${h.index} reaches no node`;
        record(description);
        return { kind, start, description, undo: () => (h.reach = undefined) };
      }
      case 'holder-minority': {
        const shuffled = [...this.nodeIds];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = this.o.faultRandom.nextInt(i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const minority = shuffled.slice(0, Math.floor((shuffled.length - 1) / 2));
        h.reach = new Set(minority);
        const description = `holder ${h.index} reaches only ${minority.map((n) => `n${n}`).join(' ')}`;
        record(description);
        return { kind, start, description, undo: () => (h.reach = undefined) };
      }
      case 'holder-pause': {
        h.paused = true;
        const description = `holder ${h.index} paused`;
        record(description);
        return {
          kind,
          start,
          description,
          undo: () => {
            h.paused = false;
            for (const run of h.parked.splice(0, h.parked.length)) c.at(0, `holder ${h.index} resumed`, () => this.asHolder(h, run));
          },
        };
      }
    }
  }
}

/** What the node would answer the holder for an applied command of `kind`. */
function resultOf(kind: LeaseRequestKind, outcome: unknown): [LeaseRequestResult, string?] {
  if (kind === 'attach') {
    const applied = kvOutcome(outcome).outcome;
    if (applied.kind === 'put') return ['ok'];
    if (applied.kind === 'error' && 'code' in applied.error && applied.error.code === 'lease-not-found') return ['gone', applied.error.code];
    return ['refused', applied.kind === 'error' ? applied.error.message : applied.kind];
  }
  const lease = leaseOutcome(outcome);
  switch (lease.kind) {
    case 'granted':
      return kind === 'grant' ? ['ok'] : ['refused', 'granted'];
    case 'renewed':
      return (lease.renewals[0]?.ttlSeconds ?? 0) > 0 ? ['ok'] : ['gone', 'TTL 0'];
    case 'revoked':
      return ['ok'];
    case 'error':
      return lease.error.code === 'lease-not-found' ? ['gone', lease.error.code] : ['refused', lease.error.code];
    case 'expired':
      return ['refused', 'expired'];
  }
}
