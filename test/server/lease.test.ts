/**
 * Leases against a real 3-node cluster: etcdctl's lease commands with etcd's outputs and errors,
 * keys attached and deleted in one revision on revoke, expiry within its bound, keep-alives
 * through any node (a follower forwards them over the peer stream), leases across a leader
 * change and a full restart.
 */
import { spawnSync } from 'node:child_process';
import http2 from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { methodCodec, longsAsStrings } from '../../src/client/index.js';
import { etcdType } from '../../src/etcd-proto.js';
import { leaseKeepAlivesPendingPerStreamMax } from '../../src/server/limits.js';
import { TestCluster, etcdChannel, etcdctl, prefixEnd, waitUntil } from './cluster-harness.js';

let cluster: TestCluster;
const run = (args: string[], endpoints = cluster.endpoints) => etcdctl(endpoints, args);
const ok = (args: string[], endpoints?: string): string => {
  const r = run(args, endpoints);
  if (r.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed (${r.code}): ${r.stderr}\n${cluster.logs()}`);
  return r.stdout;
};

/** The dev layout's election timeout: 10 ticks of 100 ms; etcd's minimum TTL is 1.5 of it, rounded up. */
const electionTimeoutMs = 1000;
const minTtlSeconds = 2;

function grant(ttl: number, endpoints?: string): string {
  const out = ok(['lease', 'grant', String(ttl)], endpoints);
  const match = /^lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n$/.exec(out);
  expect(match, out).not.toBeNull();
  return match![1]!;
}

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

async function leaderIndex(): Promise<number> {
  const status = JSON.parse(ok(['endpoint', 'status', '-w', 'json'])) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
  const index = cluster.nodes.findIndex((_, i) => {
    const s = status.find((x) => x.Endpoint === cluster.endpoint(i));
    return s !== undefined && s.Status.leader === s.Status.header.member_id;
  });
  expect(index).toBeGreaterThanOrEqual(0);
  return index;
}

describe('etcdctl lease against a 3-node DKV cluster', () => {
  it('grants, attaches keys, lists, keeps alive, reports time to live and revokes, as etcd prints them', () => {
    const granted = performance.now();
    const id = grant(30);
    ok(['put', 'lk/1', 'a', `--lease=${id}`]);
    ok(['put', 'lk/2', 'b', `--lease=${id}`]);
    // Remaining: 30 s less the time since the grant (etcdctl processes are slow on a loaded machine), rounded down.
    const remaining = (out: string): number => {
      const elapsedS = (performance.now() - granted) / 1000;
      const r = Number(/remaining\((\d+)s\)/.exec(out)?.[1]);
      expect(r).toBeLessThanOrEqual(30);
      expect(r).toBeGreaterThanOrEqual(Math.floor(30 - elapsedS) - 1);
      return r;
    };
    const ttl = ok(['lease', 'timetolive', id]);
    expect(ttl).toMatch(new RegExp(`^lease ${id} granted with TTL\\(30s\\), remaining\\(\\d+s\\)\\n$`));
    remaining(ttl);
    const withKeys = ok(['lease', 'timetolive', '--keys', id]);
    expect(withKeys).toMatch(new RegExp(`^lease ${id} granted with TTL\\(30s\\), remaining\\(\\d+s\\), attached keys\\(\\[lk/1 lk/2\\]\\)\\n$`));
    remaining(withKeys);
    expect(ok(['lease', 'keep-alive', '--once', id])).toBe(`lease ${id} keepalived with TTL(30)\n`);
    expect(ok(['lease', 'list'])).toContain(`${id}\n`);
    expect(ok(['get', 'lk/1', '-w', 'json'])).toContain(`"lease":${BigInt(`0x${id}`).toString()}`);
    expect(ok(['lease', 'revoke', id])).toBe(`lease ${id} revoked\n`);
    expect(ok(['get', 'lk/', '--prefix'])).toBe('');
    expect(ok(['lease', 'timetolive', id])).toBe(`lease ${id} already expired\n`);
    expect(ok(['lease', 'list'])).not.toContain(`${id}\n`);
  });

  it("answers etcd's errors: unknown leases, a TTL too large, a lease id taken", () => {
    const unknown = '123abc';
    let r = run(['lease', 'revoke', unknown]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringContaining('failed to revoke lease (etcdserver: requested lease not found)')]);
    r = run(['lease', 'keep-alive', '--once', unknown]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('etcdserver: requested lease not found');
    r = run(['put', 'x', 'y', `--lease=${unknown}`]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringContaining('etcdserver: requested lease not found')]);
    r = run(['lease', 'grant', '9000000001']);
    expect([r.code, r.stderr]).toEqual([1, expect.stringContaining('etcdserver: too large lease TTL')]);
    expect(ok(['lease', 'timetolive', unknown, '-w', 'json'])).toContain('"ttl":-1');
  });

  it('raises a TTL below the minimum to 1.5 election timeouts, rounded up to seconds', async () => {
    expect(ok(['lease', 'grant', '1'])).toMatch(new RegExp(`granted with TTL\\(${minTtlSeconds}s\\)`));
    // A granted id is refused the second time, with etcd's error (raw call: etcdctl cannot pick ids).
    const channel = etcdChannel(cluster.endpoint(0));
    try {
      const codec = methodCodec('etcdserverpb.Lease', 'LeaseGrant', longsAsStrings);
      const granted = await channel.unary(codec, { ID: '9223372036854775807', TTL: 60 });
      expect(granted).toMatchObject({ ID: '9223372036854775807', TTL: '60' });
      await expect(channel.unary(codec, { ID: '9223372036854775807', TTL: 60 })).rejects.toMatchObject({ details: 'etcdserver: lease already exists' });
      await expect(channel.unary(codec, { ID: '-5', TTL: -3 })).resolves.toMatchObject({ ID: '-5', TTL: String(minTtlSeconds) });
    } finally {
      channel.close();
    }
  });
});

describe('dkv lease', () => {
  const dkv = (args: string[]) => {
    const r = spawnSync(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'dkv.js'), 'lease', ...args, `--endpoints=${cluster.endpoints}`], { encoding: 'utf8', timeout: 30_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('grants with a chosen id, keeps alive once, lists, reports and revokes; errors exit 1, bad usage 2', () => {
    expect(dkv(['grant', '40', '--id', 'cafe'])).toMatchObject({ code: 0, stdout: 'lease cafe granted with TTL(40s)\n' });
    ok(['put', 'cli/k', 'v', '--lease=cafe']);
    expect(dkv(['timetolive', 'cafe', '--keys']).stdout).toMatch(/^lease cafe granted with TTL\(40s\), remaining\(\d+s\), attached keys\(\[cli\/k\]\)\n$/);
    expect(dkv(['keep-alive', 'cafe', '--once'])).toMatchObject({ code: 0, stdout: 'lease cafe keepalived with TTL(40)\n' });
    expect(dkv(['list']).stdout).toContain('\ncafe\n');
    expect(dkv(['revoke', 'cafe'])).toMatchObject({ code: 0, stdout: 'lease cafe revoked\n' });
    expect(dkv(['timetolive', 'cafe'])).toMatchObject({ code: 0, stdout: 'lease cafe already expired\n' });
    expect(dkv(['revoke', 'cafe'])).toMatchObject({ code: 1, stderr: 'dkv lease: etcdserver: requested lease not found\n' });
    expect(dkv(['keep-alive', 'cafe'])).toMatchObject({ code: 1, stderr: 'lease cafe expired or revoked.\n' });
    expect(dkv(['grant', 'ten']).code).toBe(2);
    expect(dkv(['revoke', 'xyz']).code).toBe(2);
  }, 60_000);
});

describe('revocation and expiry', () => {
  it('deletes every attached key in one revision, which a watcher sees in one response', async () => {
    const id = grant(60);
    for (let i = 0; i < 20; i++) ok(['put', `rv/${String(i).padStart(2, '0')}`, 'x', `--lease=${id}`]);
    ok(['put', 'rv/free', 'stays']);
    const channel = etcdChannel(cluster.endpoint(1));
    const responses: Array<{ events?: Array<{ type?: string; kv?: { key: Buffer; mod_revision: number } }> }> = [];
    let created = false;
    const stream = channel.watch({
      onResponse: (response) => {
        if (response.created === true) created = true;
        else responses.push(response as (typeof responses)[number]);
      },
      onEnd: () => undefined,
    });
    try {
      stream.send({ create_request: { key: Buffer.from('rv/'), range_end: prefixEnd('rv/') } });
      await waitUntil(() => created, 10_000, () => 'watch created');
      ok(['lease', 'revoke', id]);
      await waitUntil(() => responses.some((r) => (r.events?.length ?? 0) > 0), 10_000, () => 'delete events');
      const deletes = responses.flatMap((r) => r.events ?? []);
      expect(responses.filter((r) => (r.events?.length ?? 0) > 0).length).toBe(1);
      expect(deletes.length).toBe(20);
      // Decoded as numbers: DELETE is 1.
      expect(deletes.every((e) => (e.type as unknown) === 1)).toBe(true);
      expect(new Set(deletes.map((e) => e.kv!.mod_revision)).size).toBe(1);
      expect(ok(['get', 'rv/', '--prefix', '--keys-only'])).toBe('rv/free\n\n');
    } finally {
      stream.close();
      channel.close();
    }
  });

  it('expires a lease nobody keeps alive within TTL + one election timeout + one tick, and deletes its keys', async () => {
    const id = grant(minTtlSeconds);
    const started = Date.now();
    ok(['put', 'exp/k', 'v', `--lease=${id}`]);
    await waitUntil(() => ok(['get', 'exp/k', '--keys-only']) === '', 15_000, () => 'expiry', 20);
    const elapsedMs = Date.now() - started;
    // The bound, plus what the test's own polling (an etcdctl process per look) adds.
    expect(elapsedMs).toBeLessThan(minTtlSeconds * 1000 + electionTimeoutMs + 100 + 1500);
    expect(elapsedMs).toBeGreaterThanOrEqual(minTtlSeconds * 1000 - 100);
    expect(ok(['lease', 'timetolive', id])).toBe(`lease ${id} already expired\n`);
  }, 30_000);

  it('keeps a lease alive through a follower for several TTLs', async () => {
    const leader = await leaderIndex();
    const follower = [0, 1, 2].find((i) => i !== leader)!;
    const id = grant(minTtlSeconds, cluster.endpoint(follower));
    ok(['put', 'ka/k', 'v', `--lease=${id}`], cluster.endpoint(follower));
    const channel = etcdChannel(cluster.endpoint(follower));
    const stream = channel.bidiStream(methodCodec('etcdserverpb.Lease', 'LeaseKeepAlive', longsAsStrings));
    const answers: Array<{ ID: string; TTL: string }> = [];
    stream.on('data', (r: { ID: string; TTL: string }) => answers.push(r));
    stream.on('error', () => undefined);
    try {
      const id10 = BigInt(`0x${id}`).toString();
      const until = Date.now() + 3 * minTtlSeconds * 1000;
      while (Date.now() < until) {
        stream.write({ ID: id10 });
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      expect(answers.length).toBeGreaterThanOrEqual(8);
      expect(answers.every((a) => a.ID === id10 && a.TTL === String(minTtlSeconds))).toBe(true);
      expect(ok(['get', 'ka/k', '--print-value-only'])).toBe('v\n');
    } finally {
      stream.end();
      channel.close();
    }
  }, 30_000);
});

describe('a keep-alive flood', () => {
  it('gets one answer per request (5,000 written at once), while the node keeps serving others', async () => {
    const id = grant(60);
    const id10 = BigInt(`0x${id}`).toString();
    const channel = etcdChannel(cluster.endpoint(1));
    const other = etcdChannel(cluster.endpoint(1));
    const stream = channel.bidiStream(methodCodec('etcdserverpb.Lease', 'LeaseKeepAlive', longsAsStrings));
    const flood = 5_000;
    let answered = 0;
    let wrong = 0;
    stream.on('data', (r: { ID: string; TTL: string }) => {
      answered++;
      if (r.ID !== id10 || r.TTL !== '60') wrong++;
    });
    stream.on('error', () => undefined);
    try {
      // All written at once, faster than renewals commit: the server reads at its own pace.
      for (let i = 0; i < flood; i++) stream.write({ ID: id10 });
      // Meanwhile the node serves other clients.
      await other.kv('Put', { key: Buffer.from('flood/other'), value: Buffer.from('x') });
      await waitUntil(() => answered === flood, 60_000, () => `${answered} of ${flood} keep-alives answered`);
      expect(wrong).toBe(0);
      expect(ok(['lease', 'timetolive', id])).toMatch(/remaining\((59|60)s\)/);
    } finally {
      stream.end();
      channel.close();
      other.close();
    }
    expect(ok(['lease', 'revoke', id])).toBe(`lease ${id} revoked\n`);
  }, 90_000);

  it('stops reading a client that sends and never reads: renewals stop at the bound, then all are answered once it reads', async () => {
    const id = grant(60);
    const node = 1;
    const keepAlivesRead = async (): Promise<number> => {
      const text = await (await fetch(`${cluster.nodes[node]!.metricsUrl}/metrics`)).text();
      return Number(/^dkv_lease_keepalives_total (\d+)$/m.exec(text)?.[1] ?? 'NaN');
    };
    // A raw HTTP/2 client, so that nothing reads the answers until the test says so (gRPC
    // clients read ahead into buffers of their own).
    const session = http2.connect(`http://${cluster.endpoint(node)}`);
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'POST', ':path': '/etcdserverpb.Lease/LeaseKeepAlive', 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    stream.pause();
    const request = etcdType('etcdserverpb.LeaseKeepAliveRequest');
    const body = Buffer.from(request.encode({ ID: BigInt(`0x${id}`).toString() }).finish());
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
    const flood = 20_000;
    try {
      const before = await keepAlivesRead();
      for (let i = 0; i < flood; i++) stream.write(frame);
      // The count stops moving once the server stops reading.
      let last = -1;
      let stableSince = performance.now();
      await waitUntil(async () => {
        const now = await keepAlivesRead();
        if (now !== last) {
          last = now;
          stableSince = performance.now();
        }
        return performance.now() - stableSince >= 1000;
      }, 30_000, () => `keep-alives still being read: ${last}`);
      // About 1,900 here (all 20,000 when answers were written whether or not the client read):
      // the bound, plus what flow control lets through (the client's 64 KiB window of answers, of
      // about 35 bytes each, and the server's stream buffer).
      const readUnanswered = last - before;
      expect(readUnanswered).toBeGreaterThan(leaseKeepAlivesPendingPerStreamMax);
      expect(readUnanswered).toBeLessThan(leaseKeepAlivesPendingPerStreamMax + 65_536 / 20);
      // Reading now, the client gets every answer.
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      stream.resume();
      await waitUntil(async () => (await keepAlivesRead()) - before === flood, 60_000, () => 'every keep-alive read');
      await waitUntil(() => bytes >= flood * 10, 60_000, () => `${bytes} bytes of answers`);
    } finally {
      stream.close();
      session.close();
    }
    expect(ok(['lease', 'timetolive', id])).toMatch(/remaining\((59|60)s\)/);
    expect(ok(['lease', 'revoke', id])).toBe(`lease ${id} revoked\n`);
  }, 120_000);
});

describe('leases survive leader changes and restarts', () => {
  it('a lease kept alive is not revoked across a leader kill; an abandoned one still expires', async () => {
    const kept = grant(5);
    const abandoned = grant(minTtlSeconds);
    ok(['put', 'lc/kept', 'v', `--lease=${kept}`]);
    ok(['put', 'lc/abandoned', 'v', `--lease=${abandoned}`]);
    const leader = await leaderIndex();
    const others = [0, 1, 2].filter((i) => i !== leader);
    const endpoints = others.map((i) => cluster.endpoint(i)).join(',');
    await cluster.kill(leader);
    try {
      await waitUntil(() => run(['lease', 'keep-alive', '--once', kept], endpoints).code === 0, 20_000, () => 'a keep-alive after the leader change');
      await waitUntil(() => ok(['get', 'lc/abandoned', '--keys-only'], endpoints) === '', 20_000, () => 'expiry under the new leader');
      expect(ok(['get', 'lc/kept', '--print-value-only'], endpoints)).toBe('v\n');
    } finally {
      cluster.startNode(leader);
    }
    await waitUntil(() => run(['get', 'lc/kept', '--consistency=s', '--print-value-only'], cluster.endpoint(leader)).stdout === 'v\n', 20_000, () => `the old leader catches up\n${cluster.logs()}`);
    expect(ok(['lease', 'revoke', kept])).toBe(`lease ${kept} revoked\n`);
  }, 60_000);

  it('restores leases and their keys after every node restarts', async () => {
    const id = grant(120);
    ok(['put', 'rs/k', 'v', `--lease=${id}`]);
    for (let i = 0; i < 3; i++) await cluster.kill(i);
    for (let i = 0; i < 3; i++) cluster.startNode(i);
    await waitUntil(() => run(['lease', 'timetolive', '--keys', id]).code === 0, 30_000, () => 'the cluster back');
    expect(ok(['lease', 'timetolive', '--keys', id])).toMatch(new RegExp(`^lease ${id} granted with TTL\\(120s\\), remaining\\(\\d+s\\), attached keys\\(\\[rs/k\\]\\)\\n$`));
    expect(ok(['lease', 'revoke', id])).toBe(`lease ${id} revoked\n`);
    expect(ok(['get', 'rs/k'])).toBe('');
    const hashes = JSON.parse(ok(['endpoint', 'hashkv', '-w', 'json'])) as Array<{ HashKV: { hash: number } }>;
    expect(new Set(hashes.map((h) => h.HashKV.hash)).size).toBe(1);
    // Hash covers every engine (the lease table too): the replicas agree once they applied the same entries.
    const channels = [0, 1, 2].map((i) => etcdChannel(cluster.endpoint(i)));
    try {
      await waitUntil(async () => {
        const all = await Promise.all(channels.map((c) => c.maintenance('Hash', {})));
        return new Set(all.map((h) => h.hash)).size === 1;
      }, 10_000, () => 'equal state machine hashes');
    } finally {
      for (const c of channels) c.close();
    }
  }, 90_000);
});
