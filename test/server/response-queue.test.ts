/**
 * The response queue over a real grpc-js server and client on loopback: with a framer it writes
 * to the HTTP/2 stream under the call (many responses per write), the client still reads every
 * message whole and in order, a stalled client is held off by 'drain', and the server still ends
 * the call with its status after everything queued. Without a framer it writes through grpc-js.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { ResponseQueue, flushBytesTarget, grpcFrames } from '../../src/server/response-queue.js';

const path = '/test.Queue/Stream';
const encode = (value: object): Buffer => Buffer.from(JSON.stringify(value));
const decode = (bytes: Buffer): object => JSON.parse(bytes.toString()) as object;

interface Run {
  readonly address: string;
  readonly queues: ResponseQueue[];
  stop(): void;
}

const runs: Run[] = [];
afterEach(() => {
  while (runs.length > 0) runs.pop()!.stop();
});

/** A server whose one streaming method queues `count` responses of `size` bytes, then ends. */
async function serve(count: number, size: number, framed: boolean, bytesMax = 64 * 1024 * 1024): Promise<Run> {
  const server = new grpc.Server();
  const queues: ResponseQueue[] = [];
  server.register(
    path,
    (call: grpc.ServerWritableStream<Buffer, object>) => {
      let next = 0;
      let ended = false;
      const queue: ResponseQueue = new ResponseQueue(call, bytesMax, {
        onRoom: () => fill(),
        onEmpty: () => {
          if (next === count && !ended) {
            ended = true;
            call.end();
          }
        },
        frames: framed ? grpcFrames(encode) : undefined,
      });
      queues.push(queue);
      const fill = (): void => {
        while (next < count && queue.hasRoom()) {
          queue.push({ n: next, pad: 'x'.repeat(size) }, size + 16);
          next++;
        }
      };
      fill();
    },
    encode,
    (bytes: Buffer) => bytes,
    'serverStream',
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  const run = { address: `127.0.0.1:${port}`, queues, stop: () => server.forceShutdown() };
  runs.push(run);
  return run;
}

/** Reads the whole stream; `pauseMs` holds the reader still before it starts. */
async function read(address: string, pauseMs = 0): Promise<{ numbers: number[]; status: grpc.StatusObject }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const call = client.makeServerStreamRequest(path, (value: Buffer) => value, decode, Buffer.alloc(0));
  if (pauseMs > 0) {
    call.pause();
    setTimeout(() => call.resume(), pauseMs);
  }
  const numbers: number[] = [];
  call.on('data', (message: { n: number }) => numbers.push(message.n));
  const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  client.close();
  return { numbers, status };
}

describe('ResponseQueue', () => {
  it('frames responses itself and writes them to the HTTP/2 stream together, in order and whole', async () => {
    const run = await serve(5000, 40, true);
    const { numbers, status } = await read(run.address);
    expect(run.queues[0]!.framed).toBe(true);
    expect(status.code).toBe(grpc.status.OK);
    expect(numbers).toEqual(Array.from({ length: 5000 }, (_, i) => i));
  });

  it('waits for drain when the client stalls, with memory bounded by the queue limit', async () => {
    // 40 MiB of responses against an 8 MiB queue: the producer must wait for room.
    const size = 64 * 1024;
    const count = 640;
    const run = await serve(count, size, true, 8 * 1024 * 1024);
    const { numbers, status } = await read(run.address, 300);
    expect(status.code).toBe(grpc.status.OK);
    expect(numbers).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(flushBytesTarget).toBeLessThan(8 * 1024 * 1024);
    expect(run.queues[0]!.framed).toBe(true);
    expect(run.queues[0]!.waits).toBeGreaterThan(0);
  });

  it('runs on the grpc-js version package.json pins exactly (the framed path reads its internals)', () => {
    const root = join(import.meta.dirname, '..', '..');
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const installed = JSON.parse(readFileSync(join(root, 'node_modules', '@grpc', 'grpc-js', 'package.json'), 'utf8')) as { version: string };
    const pinned = manifest.dependencies['@grpc/grpc-js'];
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(installed.version).toBe(pinned);
  });

  it('without a framer writes each response through grpc-js', async () => {
    const run = await serve(2000, 40, false);
    const { numbers, status } = await read(run.address);
    expect(run.queues[0]!.framed).toBe(false);
    expect(status.code).toBe(grpc.status.OK);
    expect(numbers).toEqual(Array.from({ length: 2000 }, (_, i) => i));
  });
});
