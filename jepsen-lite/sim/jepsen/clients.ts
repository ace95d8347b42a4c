/**
 * Simulated clients of the jepsen sim run: each process does one operation at a time against a
 * node of the simulated cluster, exactly as a gRPC client of a server would — a request travels
 * to the node, the node proposes the command (or runs a ReadIndex), and the answer travels back.
 *
 * - A write is `ok` once its node applies the entry carrying its (proposer, request id); a
 *   synchronous refusal (ProposalDropped) or a deterministic refusal by the state machine is
 *   `fail`; a crash of the node or no answer within `clientTimeoutMs` is `info`.
 * - A read is served once the node's ReadIndex answer arrived and the node applied up to it;
 *   otherwise (crash, refusal, timeout) it is `fail` (a read has no effect).
 * - After an `info` the process may still have an operation in flight forever, so it continues
 *   under a new process number (+ the number of clients), as Jepsen does.
 */
import type { Entry, SeededPrng } from '../../../raft/index';
import { encodeCommand } from '../../../src/engines/kv/command';
import type { AppliedCommand } from '../../../src/engines/kv/state-machine';
import type { KvInput, Operation, OpStatus, RegisterInput } from '../../history';
import {
  type EtcdCall,
  type EtcdResponse,
  type Generator,
  type WorkloadInput,
  type WorkloadOutput,
  EtcdCallError,
  describeError,
  fromEtcdResponse,
  isWriteCall,
  readResponse,
  toEtcdCall,
  writeCommand,
  writeResponse,
} from '../../workload/index';
import type { SimCluster } from '../cluster';
import type { SimKvApplication } from './kv-app';

/** A client gives up on an answer after this long (simulated ms): the op is `info` (writes) or `fail` (reads). */
export const clientTimeoutMs = 1500;
/** One-way delay between a client and a node, uniform in [min, max] simulated ms. */
export const clientLinkDelayMsMin = 1;
export const clientLinkDelayMsMax = 3;
/** Pause between an answer and the process's next operation, uniform in [0, max]. */
export const clientThinkMsMax = 10;
/** After a definite failure (node down, no leader) a process waits this long before retrying. */
export const clientBackoffMs = 50;

export interface OpRecord {
  readonly id: number;
  process: number;
  readonly call: number;
  ret?: number;
  status?: OpStatus;
  readonly input: WorkloadInput;
  output?: WorkloadOutput;
  error?: string;
  readonly node: number;
}

interface PendingWrite {
  readonly data: Uint8Array;
  readonly op: OpRecord;
  readonly respond: (result: Answer) => void;
}

interface PendingRead {
  readonly index: number;
  readonly serve: () => void;
}

type Answer = { readonly response: EtcdResponse } | { readonly status: 'fail' | 'info'; readonly error: string };

export interface ClientsOptions {
  readonly cluster: SimCluster;
  readonly applications: ReadonlyMap<number, SimKvApplication>;
  readonly generator: Generator;
  readonly random: SeededPrng;
  /** Process numbers 0..count-1 issue operations. */
  readonly processes: readonly number[];
  /** Processes renumber by this much after an `info`. */
  readonly processStride: number;
  readonly keyPrefix: string;
  /** Test-only fault: reads served from the local state machine without ReadIndex. */
  readonly staleReads: boolean;
}

export class SimClients {
  readonly operations: OpRecord[] = [];
  /** Operations are issued only before this simulated time. */
  issueUntil = Number.POSITIVE_INFINITY;
  private nextRequestId = 1;
  private readonly writes = new Map<number, Map<number, PendingWrite>>();
  private readonly reads = new Map<number, PendingRead[]>();
  /** Failure callbacks of everything in flight at a node (its crash ends them). */
  private readonly inFlight = new Map<number, Set<(error: string) => void>>();
  private readonly nodeIds: number[];

  constructor(private readonly o: ClientsOptions) {
    this.nodeIds = [...o.cluster.nodes.keys()].sort((a, b) => a - b);
    for (const id of this.nodeIds) {
      this.writes.set(id, new Map());
      this.reads.set(id, []);
      this.inFlight.set(id, new Set());
    }
    o.cluster.onApply((node) => this.releaseReads(node.id));
  }

  start(): void {
    for (const process of this.o.processes) this.schedule(process, this.o.random.nextInt(clientThinkMsMax + 1));
  }

  /** Operations not yet answered. */
  get outstanding(): number {
    return this.operations.filter((op) => op.status === undefined).length;
  }

  private linkDelay(): number {
    return clientLinkDelayMsMin + this.o.random.nextInt(clientLinkDelayMsMax - clientLinkDelayMsMin + 1);
  }

  private schedule(process: number, delayMs: number): void {
    this.o.cluster.at(delayMs, `client ${process}`, () => this.issue(process));
  }

  private issue(process: number): void {
    const c = this.o.cluster;
    if (c.now >= this.issueUntil) return;
    const input = this.o.generator.next(process);
    const node = this.nodeIds[this.o.random.nextInt(this.nodeIds.length)]!;
    const op: OpRecord = { id: this.operations.length, process, call: c.now, input, node };
    this.operations.push(op);
    const call = toEtcdCall(input, this.o.keyPrefix);
    let settled = false;
    const finish = (answer: Answer): void => {
      if (settled) return;
      settled = true;
      this.complete(op, answer);
    };
    c.at(clientTimeoutMs, `client ${process} timeout`, () =>
      finish({ status: isWriteCall(call) ? 'info' : 'fail', error: `no answer within ${clientTimeoutMs} ms` }),
    );
    c.atNode(node, this.linkDelay(), `request ${op.id} at n${node}`, () => this.atNode(node, op, call, (answer) => {
      c.at(this.linkDelay(), `answer ${op.id}`, () => finish(answer));
    }));
  }

  private complete(op: OpRecord, answer: Answer): void {
    const c = this.o.cluster;
    op.ret = c.now;
    let next = op.process;
    if ('response' in answer) {
      op.status = 'ok';
      op.output = fromEtcdResponse(op.input as RegisterInput | KvInput, answer.response);
      this.o.generator.observe(op.input, op.output);
    } else {
      op.status = answer.status;
      op.error = answer.error;
      if (answer.status === 'info') {
        // The client never heard back: the op stays open to the end (no `ret`), the process moves on.
        op.ret = undefined;
        next = op.process + this.o.processStride;
      }
    }
    const wait = 'status' in answer && answer.status === 'fail' ? clientBackoffMs : this.o.random.nextInt(clientThinkMsMax + 1);
    this.schedule(next, wait);
  }

  /** The request reached `node` (which is not paused). */
  private atNode(node: number, op: OpRecord, call: EtcdCall, respond: (answer: Answer) => void): void {
    const app = this.o.applications.get(node)!;
    const simNode = this.o.cluster.nodes.get(node)!;
    if (simNode.status !== 'up' || app.machine === undefined) {
      respond({ status: 'fail', error: `connection refused: n${node} is down` });
      return;
    }
    if (!isWriteCall(call)) {
      const serve = (): void => {
        const machine = app.machine;
        if (machine === undefined) return;
        respond(answerOf(() => readResponse(machine.mvcc, call)));
      };
      if (this.o.staleReads) {
        serve();
        return;
      }
      this.read(node, serve, respond);
      return;
    }
    const requestId = this.nextRequestId++;
    const { kind, payload } = writeCommand(call);
    const data = encodeCommand({ kind, proposer: node, requestId, payload });
    const lost = (error: string): void => respond({ status: 'info', error });
    this.inFlight.get(node)!.add(lost);
    this.writes.get(node)!.set(requestId, {
      data,
      op,
      respond: (answer) => {
        this.inFlight.get(node)!.delete(lost);
        respond(answer);
      },
    });
    const refused = this.o.cluster.propose(node, data);
    if (refused !== undefined) {
      this.writes.get(node)!.delete(requestId);
      this.inFlight.get(node)!.delete(lost);
      respond({ status: 'fail', error: `proposal dropped: ${refused}` });
    }
  }

  private read(node: number, serve: () => void, respond: (answer: Answer) => void): void {
    const lost = (error: string): void => respond({ status: 'fail', error });
    const inFlight = this.inFlight.get(node)!;
    inFlight.add(lost);
    const done = (): void => {
      inFlight.delete(lost);
      serve();
    };
    const refused = this.o.cluster.readIndex(node, (index) => {
      this.reads.get(node)!.push({ index, serve: done });
      this.releaseReads(node);
    });
    if (refused !== undefined) {
      inFlight.delete(lost);
      respond({ status: 'fail', error: `read index refused: ${refused}` });
    }
  }

  /** Serves the reads whose read index the node has applied. */
  releaseReads(node: number): void {
    const waiting = this.reads.get(node)!;
    if (waiting.length === 0) return;
    const app = this.o.applications.get(node)!;
    if (app.machine === undefined) return;
    const applied = app.appliedIndex;
    const ready = waiting.filter((r) => r.index <= applied);
    if (ready.length === 0) return;
    this.reads.set(node, waiting.filter((r) => r.index > applied));
    for (const r of ready) r.serve();
  }

  /** A node applied a command: answer the client that proposed it there. */
  applied(node: number, applied: AppliedCommand, entry: Entry): void {
    if (applied.proposer !== node) return;
    const writes = this.writes.get(node)!;
    const pending = writes.get(applied.requestId);
    if (pending === undefined || !sameBytes(pending.data, entry.data)) return;
    writes.delete(applied.requestId);
    pending.respond(answerOf(() => writeResponse(applied.outcome)));
  }

  /** A node crashed: its connections break; what was in flight there is lost. */
  crashed(node: number): void {
    const failures = [...this.inFlight.get(node)!];
    this.inFlight.get(node)!.clear();
    this.writes.get(node)!.clear();
    this.reads.set(node, []);
    for (const fail of failures) fail(`connection lost: n${node} crashed`);
  }

  /** The finished history, in call order. */
  history(): Operation<WorkloadInput, WorkloadOutput>[] {
    return this.operations.map((op) => {
      const status = op.status ?? 'info';
      const base = { id: op.id, process: op.process, call: op.call, status, input: op.input, node: `n${op.node}` };
      return {
        ...base,
        ...(op.ret === undefined ? {} : { ret: op.ret }),
        ...(op.output === undefined ? {} : { output: op.output }),
        ...(op.error === undefined ? (op.status === undefined ? { error: 'still running when the run ended' } : {}) : { error: op.error }),
      };
    });
  }
}

function answerOf(build: () => EtcdResponse): Answer {
  try {
    return { response: build() };
  } catch (error) {
    // A deterministic refusal by the state machine: nothing changed.
    if (error instanceof EtcdCallError) return { status: 'fail', error: describeError(error) };
    throw error;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
