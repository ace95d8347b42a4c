/**
 * Leases as the lock and election clients hold them: granted with `leaseTtlSecondsRequested`
 * (the server may raise it), kept alive by a `LeaseKeeper` on a LeaseKeepAlive stream of their
 * own, revoked best-effort at the end of a cycle.
 */
import { type Decoded, type EtcdChannel, type MethodCodec, longsAsStrings, methodCodec } from '../../src/client/index.js';
import { leaseGrantRequest } from '../workload/index.js';
import { type ClientCluster, memberChannel, opTimeoutMs } from './clients.js';

/** The lease TTL clients ask for (DKV and etcd raise it to 1.5 election timeouts: 2 s by default). */
export const leaseTtlSecondsRequested = 2;
/** Renewals per lease TTL. */
export const keepAlivesPerTtl = 3;
/** A holder starts a round only while its lease has this much left, as far as it knows. */
export const leaseSafetyMarginMs = 200;
/** Deadline of the best-effort revoke at the end of a cycle (not recorded). */
export const revokeTimeoutMs = 1000;

const leaseGrantCodec = methodCodec('etcdserverpb.Lease', 'LeaseGrant', longsAsStrings);
const leaseRevokeCodec = methodCodec('etcdserverpb.Lease', 'LeaseRevoke', longsAsStrings);
const leaseKeepAliveCodec = methodCodec('etcdserverpb.Lease', 'LeaseKeepAlive', longsAsStrings);

export interface GrantedLease {
  /** The lease id, as the decimal string it came in. */
  readonly lease: string;
  readonly ttlMs: number;
}

/** LeaseGrant (not recorded: it protects nothing by itself); undefined when it failed. */
export async function grantLease(channel: EtcdChannel): Promise<GrantedLease | undefined> {
  try {
    const granted = await channel.unary(leaseGrantCodec, leaseGrantRequest(leaseTtlSecondsRequested), { timeoutMs: opTimeoutMs });
    const lease = String(granted.ID);
    const ttlMs = 1000 * Number(granted.TTL);
    if (lease === '0' || !(ttlMs > 0)) return undefined;
    return { lease, ttlMs };
  } catch {
    return undefined;
  }
}

/** Best-effort LeaseRevoke: frees what the lease holds; an expired lease answers "not found". */
export async function revokeLease(channel: EtcdChannel, lease: string): Promise<void> {
  await channel.unary(leaseRevokeCodec, { ID: lease }, { timeoutMs: revokeTimeoutMs }).catch(() => undefined);
}


interface KeeperOptions {
  readonly cluster: ClientCluster;
  /** The member the first stream goes to (by index, modulo the members). */
  readonly member: number;
  /** The lease id, as the decimal string it came in. */
  readonly lease: string;
  readonly ttlMs: number;
  readonly now: () => number;
  /** When the grant was sent: the lease lives at least until then + TTL. */
  readonly grantedAt: number;
}

/**
 * Renews a lease every `ttlMs / keepAlivesPerTtl` on a LeaseKeepAlive stream. Knows until when
 * the lease surely lives: an answered renewal proves the lease lives until its send time + TTL
 * (the server's deadline counts from when it applied it, later). A broken stream is reopened on
 * the next member at the next renewal. A process stopped by SIGSTOP renews nothing: its timer
 * fires only once it is continued.
 */
export class LeaseKeeper {
  /** ms since the run began. */
  validUntil: number;
  /** A renewal answered TTL 0: the lease is gone. */
  lost = false;
  private member: number;
  private channel: EtcdChannel | undefined;
  private stream: ReturnType<EtcdChannel['bidiStream']> | undefined;
  /** Send times of renewals not yet answered, in order (a stream answers in order). */
  private unanswered: number[] = [];
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly options: KeeperOptions) {
    this.validUntil = options.grantedAt + options.ttlMs;
    this.member = options.member;
    this.timer = setInterval(() => this.renew(), Math.max(1, Math.floor(options.ttlMs / keepAlivesPerTtl)));
  }

  /** Whether the lease still has `leaseSafetyMarginMs` left, as far as this client knows. */
  alive(now: number): boolean {
    return !this.lost && now + leaseSafetyMarginMs < this.validUntil;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.closeStream();
  }

  private renew(): void {
    if (this.stopped) return;
    const stream = this.stream ?? this.open();
    this.unanswered.push(this.options.now());
    stream.write({ ID: this.options.lease });
  }

  private open(): NonNullable<LeaseKeeper['stream']> {
    const { cluster } = this.options;
    const members = cluster.members;
    const channel = memberChannel(cluster.endpoint(members[this.member % members.length]!.name));
    const stream = channel.bidiStream(leaseKeepAliveCodec as MethodCodec<Decoded>);
    stream.on('data', (response: Decoded) => {
      const sentAt = this.unanswered.shift();
      const ttlSeconds = Number(response.TTL ?? 0);
      if (ttlSeconds <= 0) this.lost = true;
      else if (sentAt !== undefined) this.validUntil = Math.max(this.validUntil, sentAt + ttlSeconds * 1000);
    });
    stream.on('error', () => {
      if (this.stream !== stream) return;
      this.closeStream();
      this.member++;
    });
    stream.on('end', () => {
      if (this.stream === stream) this.closeStream();
    });
    this.channel = channel;
    this.stream = stream;
    return stream;
  }

  private closeStream(): void {
    const stream = this.stream;
    const channel = this.channel;
    this.stream = undefined;
    this.channel = undefined;
    this.unanswered = [];
    stream?.cancel();
    channel?.close();
  }
}

