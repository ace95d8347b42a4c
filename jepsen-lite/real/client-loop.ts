/**
 * What the lock and election clients share: a client's identity in the history (`Me`: a new
 * process after an operation that never returned), its channel for one cycle with failover to
 * the other members (`Members`), the loop of cycles (`runCycles`: after a failed cycle, the next
 * member and a short pause), and the recording of operations (`OperationRecorder.invoke`).
 */
import { type Decoded, type EtcdChannel, type RpcError, grpcStatus } from '../../src/client/index.js';
import type { Operation } from '../history.js';
import { classifyError, describeError } from '../workload/index.js';
import { type ClientCluster, type Invoked, errorPauseMs, memberChannel, pause } from './clients.js';

export { pause };

/** An int64 that must be a revision (decoded as a decimal string). */
export function revisionOf(value: unknown, what: string): number {
  const revision = Number(value ?? 0);
  if (!Number.isSafeInteger(revision) || revision <= 0) throw new Error(`${what} without a revision: ${JSON.stringify(value)}`);
  return revision;
}

/** The response header's revision. */
export function headerRevision(response: Decoded): number {
  return revisionOf((response.header as { revision?: unknown } | undefined)?.revision, 'response');
}

/** A client's identity in the history: a new process after an operation that never returned. */
export interface Me {
  process: number;
  member: number;
}

/** A client's channel for one cycle; a holder may fail over to other members. */
export interface Link {
  channel: EtcdChannel;
  failovers: number;
}

/** The cluster's members as a client walks them (by index, wrapping around). */
export class Members {
  constructor(readonly cluster: ClientCluster) {}

  name(index: number): string {
    const members = this.cluster.members;
    return members[index % members.length]!.name;
  }

  channelTo(index: number): EtcdChannel {
    return memberChannel(this.cluster.endpoint(this.name(index)));
  }

  /**
   * Moves a client to the next member after a call that certainly did not happen or whose
   * member is down or cut off, as a client with several endpoints does; false once it has tried
   * them all this cycle.
   */
  failover(me: Me, link: Link): boolean {
    if (link.failovers >= this.cluster.members.length - 1) return false;
    link.failovers++;
    link.channel.close();
    me.member++;
    link.channel = this.channelTo(me.member);
    return true;
  }
}

/**
 * Runs `cycle` until `signal` aborts, each on a fresh channel to the client's member; a cycle
 * that returns false (something failed) moves the client to the next member after a pause.
 */
export async function runCycles(me: Me, members: Members, signal: AbortSignal, cycle: (link: Link) => Promise<boolean>): Promise<void> {
  while (!signal.aborted) {
    const link: Link = { channel: members.channelTo(me.member), failovers: 0 };
    let ok: boolean;
    try {
      ok = await cycle(link);
    } finally {
      link.channel.close();
    }
    if (!ok) {
      me.member++;
      await pause(errorPauseMs, signal);
    }
  }
}

/** An operation that has been called and not yet returned. */
export type Invocation = Pick<Operation, 'id' | 'process' | 'call' | 'input' | 'node'>;

export interface RecorderOptions {
  /** ms since the run began (`clock.ts`). */
  readonly now: () => number;
  readonly members: Members;
  /** A client whose operation never returned becomes process + this (the number of clients). */
  readonly processStride: number;
  readonly onInvoke?: (invocation: Invocation) => void;
  readonly onComplete: (op: Operation) => void;
}

/** A classification an operation claims for an error before the common one (a stale fence, "not leader"). */
export type ErrorClaim = (error: unknown) => { status: 'fail' | 'info'; error: string } | undefined;

/** Records operations: ids in call order within this recorder, call and return times, status. */
export class OperationRecorder {
  private nextId = 0;

  constructor(private readonly options: RecorderOptions) {}

  /**
   * Runs one operation and records it. `claim` may classify an error first; otherwise errors are
   * classified as every workload classifies them (`fail` only for errors that prove nothing
   * happened). A deadline or cancellation means the client never heard back: no return time.
   */
  async invoke<O>(me: Me, input: unknown, run: () => Promise<O>, claim?: ErrorClaim): Promise<Invoked<O>> {
    const { now } = this.options;
    const invocation: Invocation = { id: this.nextId++, process: me.process, call: now(), input, node: this.options.members.name(me.member) };
    this.options.onInvoke?.(invocation);
    let result: Invoked<O>;
    try {
      result = { status: 'ok', output: await run() };
    } catch (error) {
      const code = (error as RpcError).code;
      const heardBack = code !== grpcStatus.DEADLINE_EXCEEDED && code !== grpcStatus.CANCELLED;
      const claimed = claim?.(error);
      result = claimed !== undefined ? { ...claimed, heardBack } : { status: classifyError(error), error: describeError(error), heardBack };
    }
    const ret = now();
    const recorded: Operation =
      result.status === 'ok'
        ? { ...invocation, ret, status: 'ok', output: result.output }
        : { ...invocation, ...(result.heardBack ? { ret } : {}), status: result.status, error: result.error };
    this.options.onComplete(recorded);
    if (result.status === 'info') me.process += this.options.processStride;
    return result;
  }
}
