/**
 * A raw etcd Watch stream for tests: send create/cancel/progress requests, collect every decoded
 * response in order, and wait for conditions on them. `pause()`/`resume()` stop and restart
 * reading, to play a slow consumer.
 */
import type * as grpc from '@grpc/grpc-js';
import { type Decoded, EtcdChannel, methodCodec } from '../../src/client/index.js';
import { testMessageBytesMax, waitUntil } from './cluster-harness.js';

/** Responses as plain objects: int64 as numbers, enums as numbers, defaults filled in. */
const watchMethod = methodCodec('etcdserverpb.Watch', 'Watch');

export interface WatchEvent {
  type: 'PUT' | 'DELETE';
  key: string;
  value: string;
  modRevision: number;
  createRevision: number;
  version: number;
  prevValue?: string;
}

export class WatchClient {
  private readonly channel: EtcdChannel;
  private readonly call: grpc.ClientDuplexStream<object, Decoded>;
  readonly responses: Decoded[] = [];
  ended = false;

  constructor(endpoint: string, credentials?: grpc.ChannelCredentials) {
    this.channel = new EtcdChannel(endpoint, { credentials, messageBytesMax: testMessageBytesMax });
    // The raw stream rather than EtcdChannel.watch: pause() and resume() play a slow consumer.
    this.call = this.channel.bidiStream(watchMethod);
    this.call.on('data', (response: Decoded) => this.responses.push(response));
    this.call.on('error', () => (this.ended = true));
    this.call.on('end', () => (this.ended = true));
  }

  create(options: { key: string; rangeEnd?: Buffer | string; startRevision?: number; prevKv?: boolean; filters?: number[]; watchId?: number | string; progressNotify?: boolean; fragment?: boolean }): void {
    this.call.write({
      create_request: {
        key: Buffer.from(options.key),
        range_end: options.rangeEnd === undefined ? undefined : Buffer.from(options.rangeEnd),
        start_revision: options.startRevision ?? 0,
        prev_kv: options.prevKv ?? false,
        filters: options.filters ?? [],
        watch_id: options.watchId ?? 0,
        progress_notify: options.progressNotify ?? false,
        fragment: options.fragment ?? false,
      },
    });
  }

  cancel(watchId: number | string): void {
    this.call.write({ cancel_request: { watch_id: watchId } });
  }

  requestProgress(): void {
    this.call.write({ progress_request: {} });
  }

  pause(): void {
    this.call.pause();
  }

  resume(): void {
    this.call.resume();
  }

  async waitFor(predicate: (responses: readonly Decoded[]) => boolean, timeoutMs = 15_000, what = 'watch responses'): Promise<void> {
    await waitUntil(() => predicate(this.responses), timeoutMs, () => `${what}; got ${this.responses.length} responses`);
  }

  /** The events delivered to `watchId`, flattened, in order. */
  events(watchId: number): WatchEvent[] {
    const out: WatchEvent[] = [];
    for (const r of this.responses) {
      if (r.watch_id !== watchId) continue;
      for (const e of (r.events as Decoded[]) ?? []) {
        const kv = e.kv as Decoded;
        const prev = e.prev_kv as Decoded | null | undefined;
        out.push({
          type: e.type === 1 ? 'DELETE' : 'PUT',
          key: (kv.key as Buffer).toString(),
          value: (kv.value as Buffer).toString(),
          modRevision: kv.mod_revision as number,
          createRevision: kv.create_revision as number,
          version: kv.version as number,
          prevValue: prev === null || prev === undefined ? undefined : (prev.value as Buffer).toString(),
        });
      }
    }
    return out;
  }

  close(): void {
    this.call.end();
    this.call.cancel();
    this.channel.close();
  }
}
