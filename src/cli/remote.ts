/**
 * What the `dkv` commands that talk to a running cluster share: the --endpoints list, a unary
 * call that tries the next endpoint when one is unreachable, and how a failed call is printed.
 */
import { type CallOptions, EtcdChannel, type MethodCodec, grpcStatus } from '../client/index.js';

export const endpointsDefault = '127.0.0.1:2379';

/** A call's deadline from the command line (etcdctl's --command-timeout default). */
export const commandTimeoutMs = 5000;

/** Exit code of a command the server refused or that could not reach it (usage errors exit 2). */
export const exitFailure = 1;

/** A channel per endpoint, opened on first use; `close()` closes them all. */
export class Endpoints {
  private readonly channels = new Map<string, EtcdChannel>();
  private preferred = 0;

  constructor(readonly list: readonly string[]) {}

  channel(index = this.preferred): EtcdChannel {
    const endpoint = this.list[index % this.list.length]!;
    let channel = this.channels.get(endpoint);
    if (channel === undefined) {
      channel = new EtcdChannel(endpoint, { callTimeoutMs: commandTimeoutMs });
      this.channels.set(endpoint, channel);
    }
    return channel;
  }

  /** One unary call; an unreachable endpoint (UNAVAILABLE) passes the call to the next one. */
  async unary<R>(codec: MethodCodec<R>, request: object, options: CallOptions = {}): Promise<R> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.list.length; attempt++) {
      const index = (this.preferred + attempt) % this.list.length;
      try {
        const response = await this.channel(index).unary(codec, request, options);
        this.preferred = index;
        return response;
      } catch (error) {
        lastError = error;
        if (!isUnavailable(error) || options.signal?.aborted === true) throw error;
      }
    }
    throw lastError;
  }

  /** Makes the next endpoint the preferred one (after a call on this one failed). */
  failover(): void {
    this.preferred = (this.preferred + 1) % this.list.length;
  }

  close(): void {
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }
}

/** The call never reached a server that could answer it (or it stopped, or lost its leader). */
export function isUnavailable(error: unknown): boolean {
  return (error as { code?: number }).code === grpcStatus.UNAVAILABLE;
}

/** Prints a failed call as etcdctl does ("Error: <message>") and returns the failure exit code. */
export function reportFailure(error: unknown): number {
  const details = (error as { details?: string }).details;
  process.stderr.write(`Error: ${details ?? (error as Error).message ?? String(error)}\n`);
  return exitFailure;
}
