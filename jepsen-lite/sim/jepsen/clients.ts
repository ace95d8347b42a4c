/**
 * Simulated clients of the jepsen sim run: each process does one operation at a time against a
 * node of the simulated cluster, exactly as a gRPC client of a server would — a request travels
 * to the node, the node's runtime proposes the command (or runs a ReadIndex), and the answer
 * travels back.
 *
 * - A write is `ok` once its node's runtime reports it applied; a refusal is classified as the
 *   real client classifies the gRPC status the server would send for it (the server's one error
 *   mapping): refused before proposing or proven not applied is `fail`, anything that may still
 *   apply (a timeout, the node stopping under it) is `info`, and so is no answer within
 *   `clientTimeoutMs`.
 * - A read is served once the node applied up to its read index; otherwise (crash, refusal,
 *   timeout) it is `fail` (a read has no effect).
 * - After an `info` the process may still have an operation in flight forever, so it continues
 *   under a new process number (+ the number of clients), as Jepsen does.
 */
import type { SeededPrng } from '../../../raft/index.js';
import { kvEngineOf } from '../../../src/runtime/index.js';
import { kvOutcome } from '../../../src/engines/kv/index.js';
import { clientError } from '../../../src/error-mapping.js';
import { DkvError } from '../../../src/errors.js';
import { RuntimeError, type RuntimeErrorCode } from '../../../src/runtime/index.js';
import type { KvInput, Operation, OpStatus, RegisterInput } from '../../history.js';
import {
  type EtcdCall,
  type EtcdResponse,
  type Generator,
  type WorkloadInput,
  type WorkloadOutput,
  EtcdCallError,
  classifyError,
  describeError,
  fromEtcdResponse,
  type ReadCall,
  isWriteCall,
  readResponse,
  toEtcdCall,
  writeCommand,
  writeResponse,
} from '../../workload/index.js';
import type { SimCluster } from '../cluster.js';

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

type Answer = { readonly response: EtcdResponse } | { readonly status: 'fail' | 'info'; readonly error: string };

export interface ClientsOptions {
  readonly cluster: SimCluster;
  /** The shard that holds the workload's keys. */
  readonly shard: number;
  readonly generator: Generator;
  readonly random: SeededPrng;
  /** Process numbers 0..count-1 issue operations. */
  readonly processes: readonly number[];
  /** Processes renumber by this much after an `info`. */
  readonly processStride: number;
  readonly keyPrefix: string;
  /** Test-only fault: reads served from the local state machine without ReadIndex. */
  readonly staleReads: boolean;
  /** Test-only fault: every Txn proposed without its compares (the server's --unsafe-ignore-txn-compare). */
  readonly ignoreTxnCompare?: boolean;
}

export class SimClients {
  readonly operations: OpRecord[] = [];
  /** Operations are issued only before this simulated time. */
  issueUntil = Number.POSITIVE_INFINITY;
  private readonly nodeIds: number[];

  constructor(private readonly o: ClientsOptions) {
    this.nodeIds = [...o.cluster.nodes.keys()].sort((a, b) => a - b);
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
    const cluster = this.o.cluster;
    const simNode = cluster.nodes.get(node)!;
    const machine = simNode.machine(this.o.shard);
    if (simNode.status !== 'up' || machine === undefined) {
      respond({ status: 'fail', error: `connection refused: n${node} is down` });
      return;
    }
    if (!isWriteCall(call)) {
      const serve = (): void => {
        const current = simNode.machine(this.o.shard);
        if (current === undefined) return;
        respond(answerOf(() => readResponse(kvEngineOf(current).mvcc, call as ReadCall)));
      };
      if (this.o.staleReads) serve();
      else cluster.readIndex(node, serve, (code) => respond(refusal(code, op.input)), this.o.shard);
      return;
    }
    const proposed: EtcdCall = this.o.ignoreTxnCompare === true && call.method === 'txn' ? { method: 'txn', request: { ...call.request, compare: [] } } : call;
    cluster.submit(node, this.o.shard, writeCommand(proposed), (code, outcome) => {
      if (code !== undefined) respond(refusal(code, op.input));
      else respond(answerOf(() => writeResponse(kvOutcome(outcome).outcome)));
    });
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

/** A runtime refusal as the client would see it: the server's status, classified as the real client does. */
function refusal(code: RuntimeErrorCode, input: WorkloadInput): Answer {
  const mapped = clientError(new RuntimeError(code, code));
  const error = mapped instanceof DkvError ? new EtcdCallError(mapped.grpcStatus, mapped.wireMessage) : new EtcdCallError(2, code);
  return { status: classifyError(error, input as RegisterInput | KvInput), error: describeError(error) };
}
