/**
 * With --max-request-bytes raised past what the store holds (a key of 1.5 MiB, a value of 16 MiB),
 * a request with a longer key or value is refused at the edge as too large, never proposed: the
 * store would stop every replica that applied it.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mvccLimits } from '../../storage/index.js';
import type { EtcdChannel, RpcError } from '../../src/client/index.js';
import { TestCluster, etcdChannel } from './cluster-harness.js';

let cluster: TestCluster;
let client: EtcdChannel;
const tooLarge = { code: grpc.status.INVALID_ARGUMENT, details: 'etcdserver: request is too large' };

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 1, args: ['--max-request-bytes', String(32 * 1024 * 1024)] });
  client = etcdChannel(cluster.endpoint(0));
}, 60_000);

afterAll(async () => {
  client?.close();
  await cluster?.stop();
});

async function failure(call: Promise<unknown>): Promise<{ code?: number; details?: string }> {
  try {
    await call;
  } catch (error) {
    return { code: (error as RpcError).code, details: (error as RpcError).details };
  }
  throw new Error('the call succeeded');
}

describe('keys and values past the store limits', () => {
  it('are refused before they are proposed, and the node keeps serving', async () => {
    const longKey = Buffer.alloc(mvccLimits.keyBytesMax + 1, 0x6b);
    const bigValue = Buffer.alloc(mvccLimits.valueBytesMax + 1, 0x76);
    expect(await failure(client.kv('Put', { key: longKey, value: Buffer.from('v') }))).toEqual(tooLarge);
    expect(await failure(client.kv('Put', { key: Buffer.from('k'), value: bigValue }))).toEqual(tooLarge);
    expect(await failure(client.kv('DeleteRange', { key: longKey }))).toEqual(tooLarge);
    expect(await failure(client.kv('Txn', { success: [{ request_put: { key: Buffer.from('k'), value: bigValue } }] }))).toEqual(tooLarge);
    expect(await failure(client.kv('Txn', { compare: [{ key: longKey, target: 'VERSION', result: 'EQUAL', version: 0 }] }))).toEqual(tooLarge);
    // At the limits, accepted.
    await client.kv('Put', { key: Buffer.alloc(mvccLimits.keyBytesMax, 0x6b), value: Buffer.alloc(mvccLimits.valueBytesMax, 0x76) });
    const after = await client.kv('Put', { key: Buffer.from('still'), value: Buffer.from('serving') });
    expect(Number((after.header as { revision: number }).revision)).toBe(3);
    expect(cluster.running(0)).toBe(true);
  }, 60_000);
});
