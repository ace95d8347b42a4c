/** A fake server call for the Watch service's unit tests (one process, no gRPC), and the service on fakes. */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { AuthGate } from '../../src/server/auth/gate.js';
import { type WatchServiceContext, createWatchService } from '../../src/server/watch-service.js';

/** The Watch service of one member (id 1, cluster 1) with no router: shards come from `defaultShard` and `route`. */
export function watchServiceOnFakes(gate: AuthGate, defaultShard: WatchServiceContext['defaultShard'], route: WatchServiceContext['route']): ReturnType<typeof createWatchService> {
  return createWatchService({ router: undefined as never, clusterId: () => 1, memberId: 1, requestTimeoutMs: 1000, gate, defaultShard, route, maxRequestBytes: 1 << 20, progressIntervalMs: 60_000 });
}

/** A server call as the watch stream uses it: 'data' is held back while paused, as a real stream does. */
export class FakeWatchCall extends EventEmitter {
  readonly metadata = new grpc.Metadata();
  readonly written: Array<{ watch_id?: number; created?: boolean; canceled?: boolean; cancel_reason?: string }> = [];
  paused = false;
  private held: object[] = [];
  constructor() {
    super();
    this.metadata.set('token', 't.1');
  }
  send(message: object): void {
    if (this.paused) this.held.push(message);
    else this.emit('data', { raw: Buffer.alloc(0), message });
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    const held = this.held;
    this.held = [];
    for (const message of held) this.send(message);
    return this;
  }
  write(response: object): boolean {
    this.written.push(response as FakeWatchCall['written'][number]);
    return true;
  }
  sendMetadata(): void {}
  end(): void {}
  getPeer(): string {
    return 'ipv4:127.0.0.1:1';
  }
}
