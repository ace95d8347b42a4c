/**
 * The data commands (get, put, del, txn, watch, compact, member, endpoint, defrag, snapshot save)
 * as users run them: `node bin/dkv.js …` against one real 3-node cluster, their output compared
 * with etcdctl's for the same data where the formats match.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CommandResult, TestCluster, etcdctl, waitUntil } from '../server/cluster-harness.js';
import { commandTimeoutMs, dkvBin as bin, startDkv } from './dkv-process.js';


let cluster: TestCluster;
let scratch: string;

beforeAll(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  scratch = mkdtempSync(join(tmpdir(), 'dkv-data-cli-'));
});

afterAll(async () => {
  await cluster?.stop();
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

const start = startDkv;

/** `dkv ARGS` run to its end. */
function dkv(args: readonly string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<CommandResult> {
  return start(args, options).exited;
}

/** Against one node, so the response header (member_id) is the same for dkv and etcdctl. */
const one = (): string[] => ['--endpoints', cluster.endpoint(0)];
const all = (): string[] => ['--endpoints', cluster.endpoints];

async function ok(args: readonly string[], input?: string): Promise<string> {
  const r = await dkv(args, { input });
  expect(r, `dkv ${args.join(' ')}`).toMatchObject({ code: 0, stderr: '' });
  return r.stdout;
}

function etcdctlOk(args: readonly string[], input?: string): string {
  const r = etcdctl(cluster.endpoint(0), args, input);
  expect(r.code, `etcdctl ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

function revisionOf(json: string): number {
  return Number(/"revision":(\d+)/.exec(json)?.[1]);
}

describe('dkv get, put, del', () => {
  let firstRevision = 0;

  beforeAll(async () => {
    expect(await ok(['put', 'kv/a', '1', ...all()])).toBe('OK\n');
    firstRevision = revisionOf(await ok(['get', 'kv/a', '-w', 'json', ...one()]));
    expect(await ok(['put', 'kv/b', '2', ...all()])).toBe('OK\n');
    // No VALUE: read from stdin, all of it, as etcdctl does.
    expect(await ok(['put', 'kv/c', ...all()], 'three\nlines\n')).toBe('OK\n');
    expect(await ok(['put', 'kv/a', '10', ...all()])).toBe('OK\n');
  });

  it('prints what etcdctl get prints, flag for flag', async () => {
    const cases = [
      ['kv/', '--prefix'],
      ['kv/', '--prefix', '--print-value-only'],
      ['kv/', '--prefix', '--keys-only'],
      ['kv/', '--prefix', '--limit', '2'],
      ['kv/', '--prefix', '--sort-by', 'modify', '--order', 'descend'],
      ['kv/', '--prefix', '--sort-by', 'value'],
      ['kv/b', '--from-key'],
      ['kv/a', 'kv/c'],
      ['kv/a', '--rev', String(firstRevision)],
      ['kv/a', '--consistency', 's'],
      ['kv/none'],
    ];
    const outputs = await Promise.all(cases.map((args) => ok(['get', ...args, ...one()])));
    cases.forEach((args, i) => expect(outputs[i], args.join(' ')).toBe(etcdctlOk(['get', ...args])));
    expect(outputs[0]).toBe('kv/a\n10\nkv/b\n2\nkv/c\nthree\nlines\n\n');
    expect(outputs[8]).toBe('kv/a\n1\n');
  });

  it('-w json is etcdctl -w json, byte for byte', async () => {
    for (const args of [['kv/', '--prefix'], ['kv/', '--prefix', '--keys-only'], ['kv/none']]) {
      const mine = await ok(['get', ...args, '-w', 'json', ...one()]);
      expect(mine, args.join(' ')).toBe(etcdctlOk(['get', ...args, '-w', 'json']));
      const parsed = JSON.parse(mine) as { header: Record<string, number> };
      expect(Object.keys(parsed.header)).toEqual(['cluster_id', 'member_id', 'revision', 'raft_term']);
    }
  });

  it('--count-only prints the count (simple) or the json count', async () => {
    expect(await ok(['get', 'kv/', '--prefix', '--count-only', ...one()])).toBe('3\n');
    const json = JSON.parse(await ok(['get', 'kv/', '--prefix', '--count-only', '-w', 'json', ...one()])) as { count: number; kvs?: unknown };
    expect(json.count).toBe(3);
    expect(json.kvs).toBeUndefined();
  });

  it('put --prev-kv, --lease, --ignore-value, and its json, as etcdctl', async () => {
    expect(await ok(['put', 'kv/p', 'v1', '--prev-kv', ...all()])).toBe('OK\n');
    expect(await ok(['put', 'kv/p', 'v2', '--prev-kv', ...all()])).toBe('OK\nkv/p\nv1\n');
    expect(etcdctlOk(['put', 'kv/p', 'v3', '--prev-kv'])).toBe('OK\nkv/p\nv2\n');
    const mine = JSON.parse(await ok(['put', 'kv/p', 'v4', '--prev-kv', '-w', 'json', ...one()])) as Record<string, unknown>;
    const theirs = JSON.parse(etcdctlOk(['put', 'kv/p', 'v5', '--prev-kv', '-w', 'json'])) as Record<string, unknown>;
    expect(Object.keys(mine)).toEqual(Object.keys(theirs));
    expect(Buffer.from((mine.prev_kv as { value: string }).value, 'base64').toString()).toBe('v3');

    const lease = /^lease ([0-9a-f]+) granted/.exec(await ok(['lease', 'grant', '60', ...all()]))?.[1];
    expect(lease).toBeDefined();
    expect(await ok(['put', 'kv/leased', 'x', '--lease', lease!, ...all()])).toBe('OK\n');
    // The lease id is an int64 past 2^53: read it from the text, exact.
    const leased = /"lease":(\d+)/.exec(await ok(['get', 'kv/leased', '-w', 'json', ...one()]))?.[1];
    expect(BigInt(leased ?? '0').toString(16)).toBe(lease);
    expect(await ok(['put', 'kv/leased', '--ignore-value', '--ignore-lease', ...all()])).toBe('OK\n');
    expect(await ok(['get', 'kv/leased', '--print-value-only', ...one()])).toBe('x\n');
    expect(await ok(['lease', 'revoke', lease!, ...all()])).toBe(`lease ${lease} revoked\n`);
  });

  it('del prints the count, and the deleted pairs with --prev-kv', async () => {
    await ok(['put', 'del/a', '1', ...all()]);
    await ok(['put', 'del/b', '2', ...all()]);
    await ok(['put', 'del/c', '3', ...all()]);
    expect(await ok(['del', 'del/none', ...all()])).toBe('0\n');
    expect(await ok(['del', 'del/a', ...all()])).toBe('1\n');
    expect(await ok(['del', 'del/', '--prefix', '--prev-kv', ...all()])).toBe('2\ndel/b\n2\ndel/c\n3\n');
    await ok(['put', 'del/d', '4', ...all()]);
    const json = JSON.parse(await ok(['del', 'del/d', '--prev-kv', '-w', 'json', ...all()])) as { deleted: number; prev_kvs: unknown[] };
    expect([json.deleted, json.prev_kvs.length]).toEqual([1, 1]);
    expect(etcdctlOk(['get', 'del/', '--prefix'])).toBe('');
  });
});

describe('dkv txn', () => {
  const readOnly = 'value("tx/a") = "1"\nmod("tx/b") > "0"\n\nget tx/a\nget tx/ --prefix --keys-only\n\nget tx/b\n\n';

  beforeAll(async () => {
    await ok(['put', 'tx/a', '1', ...all()]);
    await ok(['put', 'tx/b', 'two words', ...all()]);
  });

  it('reads etcdctl txn syntax and prints what etcdctl prints (simple and json)', async () => {
    expect(await ok(['txn', ...one()], readOnly)).toBe(etcdctlOk(['txn'], readOnly));
    expect(await ok(['txn', '-w', 'json', ...one()], readOnly)).toBe(etcdctlOk(['txn', '-w', 'json'], readOnly));
    const failing = readOnly.replace('= "1"', '= "9"');
    expect(await ok(['txn', ...one()], failing)).toBe(etcdctlOk(['txn'], failing));
    expect(await ok(['txn', ...one()], failing)).toBe('FAILURE\n\ntx/b\ntwo words\n');
  });

  it('runs writes: put, del, quoted arguments', async () => {
    const input = 'version("tx/a") = "1"\n\nput tx/c "a b"\ndel tx/a --prev-kv\nget tx/c\n\n\n';
    expect(await ok(['txn', ...all()], input)).toBe('SUCCESS\n\nOK\n\n1\ntx/a\n1\n\ntx/c\na b\n');
    expect(etcdctlOk(['get', 'tx/a'])).toBe('');
  });

  it('-i prompts for each part', async () => {
    const out = await ok(['txn', '-i', ...one()], 'create("tx/none") = "0"\n\nget tx/c\n\n\n');
    expect(out).toBe('compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\ntx/c\na b\n');
  });

  it('refuses a malformed compare or request with exit 2', async () => {
    const bad = await dkv(['txn', ...one()], { input: 'nonsense\n\n\n\n' });
    expect([bad.code, bad.stdout]).toEqual([2, '']);
    expect(bad.stderr).toMatch(/^dkv txn: malformed comparison: nonsense\n\nUsage: dkv txn/);
    const badOp = await dkv(['txn', ...one()], { input: '\nfrob x\n\n\n' });
    expect(badOp.code).toBe(2);
    expect(badOp.stderr).toMatch(/^dkv txn: invalid txn request: frob x/);
  });
});

describe('dkv watch and compact', () => {
  it('prints the events etcdctl watch prints, until SIGINT (exit 0)', async () => {
    const from = revisionOf(await ok(['put', 'w/a', '0', '-w', 'json', ...one()])) + 1;
    const args = ['w/', '--prefix', '--prev-kv', '--rev', String(from)];
    const mine = start(['watch', ...args, ...one()]);
    const json = start(['watch', ...args, '-w', 'json', ...one()]);
    await ok(['put', 'w/a', '1', ...all()]);
    await ok(['put', 'w/b', 'x y', ...all()]);
    await ok(['del', 'w/a', ...all()]);
    const expected = 'PUT\nw/a\n0\nw/a\n1\nPUT\nw/b\nx y\nDELETE\nw/a\n1\nw/a\n\n';
    await waitUntil(() => mine.stdout() === expected, 10_000, () => `watch output ${JSON.stringify(mine.stdout())}`);
    await waitUntil(() => (json.stdout().match(/"kv":/g) ?? []).length === 3, 10_000, () => `watch -w json output ${json.stdout()}`);
    mine.signal('SIGINT');
    json.signal('SIGINT');
    expect(await mine.exited).toMatchObject({ code: 0, stderr: '' });
    expect((await json.exited).code).toBe(0);
    // etcdctl's watch of the same history (it waits for more events: stopped by its timeout).
    const theirs = await new Promise<string>((resolve) => {
      const child = spawn('etcdctl', [`--endpoints=${cluster.endpoint(0)}`, 'watch', ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        if (out === expected) child.kill('SIGINT');
      });
      setTimeout(() => child.kill('SIGINT'), 10_000);
      child.on('close', () => resolve(out));
    });
    expect(mine.stdout()).toBe(theirs);
    // The server may send several events in one response: one JSON line each.
    const responses = json
      .stdout()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { Header: { revision: number }; Events: Array<{ type?: number; kv: { key: string }; prev_kv?: object }>; Canceled: boolean });
    expect(responses.every((r) => !r.Canceled && r.Header.revision >= from)).toBe(true);
    expect(responses.flatMap((r) => r.Events).map((e) => [e.type ?? 0, Buffer.from(e.kv.key, 'base64').toString(), e.prev_kv !== undefined])).toEqual([
      [0, 'w/a', true],
      [0, 'w/b', false],
      [1, 'w/a', true],
    ]);
  });

  it('compacts, refuses a compacted revision, and a watch from before it exits 1', async () => {
    const revision = revisionOf(await ok(['put', 'c/a', '1', '-w', 'json', ...one()]));
    expect(await ok(['compact', String(revision), '--physical', ...all()])).toBe(`compacted revision ${revision}\n`);
    const again = await dkv(['compact', String(revision - 1), ...all()]);
    expect(again).toMatchObject({ code: 1, stdout: '', stderr: 'dkv compact: etcdserver: mvcc: required revision has been compacted\n' });
    const watch = await dkv(['watch', 'c/a', '--rev', '1', ...one()]);
    expect(watch).toMatchObject({ code: 1, stdout: '', stderr: 'dkv watch: watch was canceled (etcdserver: mvcc: required revision has been compacted)\n' });
    const old = await dkv(['get', 'c/a', '--rev', '1', ...one()]);
    expect(old.code).toBe(1);
    expect(old.stderr).toBe('dkv get: etcdserver: mvcc: required revision has been compacted\n');
  });
});

describe('dkv member', () => {
  it('list prints what etcdctl member list prints, in each format', async () => {
    for (const format of ['simple', 'table', 'json']) {
      expect(await ok(['member', 'list', '-w', format, ...one()]), format).toBe(etcdctlOk(['member', 'list', '-w', format]));
    }
    const rows = (await ok(['member', 'list', ...one()])).trim().split('\n');
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatch(/^[0-9a-f]+, started, dkv\d, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+, false$/);
  });

  it('add (learner), update, promote and remove, as etcdctl prints them', async () => {
    const add = await ok(['member', 'add', 'extra', '--peer-urls', 'http://127.0.0.1:1', '--learner', ...all()]);
    const id = /^Member +([0-9a-f]+) added to cluster +[0-9a-f]+\n\nETCD_NAME="extra"\nETCD_INITIAL_CLUSTER="[^"]*extra=http:\/\/127\.0\.0\.1:1[^"]*"\nETCD_INITIAL_ADVERTISE_PEER_URLS="http:\/\/127\.0\.0\.1:1"\nETCD_INITIAL_CLUSTER_STATE="existing"\n$/.exec(add)?.[1];
    expect(id, add).toBeDefined();
    expect(await ok(['member', 'list', ...one()])).toContain(`${id}, unstarted, , http://127.0.0.1:1, , true\n`);
    expect(await ok(['member', 'list', '-w', 'table', ...one()])).toBe(etcdctlOk(['member', 'list', '-w', 'table']));
    expect(await ok(['member', 'update', id!, '--peer-urls', 'http://127.0.0.1:2', ...all()])).toMatch(new RegExp(`^Member +${id} updated in cluster +[0-9a-f]+\\n$`));
    // A learner that never started has no log to catch up with: the server refuses to promote it.
    const promote = await dkv(['member', 'promote', id!, ...all()]);
    expect(promote.code).toBe(1);
    expect(promote.stderr).toMatch(/^dkv member: etcdserver: /);
    expect(await ok(['member', 'remove', id!, ...all()])).toMatch(new RegExp(`^Member +${id} removed from cluster +[0-9a-f]+\\n$`));
    expect((await ok(['member', 'list', ...one()])).trim().split('\n')).toHaveLength(3);
  });
});

describe('dkv endpoint, defrag', () => {
  it('status: etcdctl table columns, one row per endpoint, one leader; json as etcdctl', async () => {
    const table = await ok(['endpoint', 'status', '-w', 'table', ...all()]);
    const theirs = etcdctlOk(['endpoint', 'status', '-w', 'table']);
    const lines = table.trim().split('\n');
    expect(lines.slice(0, 3).map((l) => l.replace(/[ -]+/g, ' '))).toEqual(theirs.split('\n').slice(0, 3).map((l) => l.replace(/[ -]+/g, ' ')));
    expect(lines).toHaveLength(7);
    const simple = (await ok(['endpoint', 'status', ...all()])).replace(/\n$/, '').split('\n');
    expect(simple).toHaveLength(3);
    expect(simple.filter((row) => row.split(', ')[4] === 'true')).toHaveLength(1);
    for (const row of simple) expect(row).toMatch(/^127\.0\.0\.1:\d+, [0-9a-f]+, \S+, [\d.]+ [kMG]?B, (true|false), false, \d+, \d+, \d+, $/);
    const mine = JSON.parse(await ok(['endpoint', 'status', '-w', 'json', ...one()])) as Array<{ Endpoint: string; Status: Record<string, unknown> }>;
    const etcd = JSON.parse(etcdctlOk(['endpoint', 'status', '-w', 'json'])) as typeof mine;
    expect(mine[0]!.Endpoint).toBe(etcd[0]!.Endpoint);
    expect(Object.keys(mine[0]!.Status).filter((k) => k !== 'leader' && k !== 'isLearner')).toEqual(Object.keys(etcd[0]!.Status).filter((k) => k !== 'leader' && k !== 'isLearner'));
    const cluster3 = (await ok(['endpoint', 'status', '--cluster', ...one()])).trim().split('\n');
    expect(cluster3.map((row) => row.split(', ')[0]).sort()).toEqual(cluster.endpoints.split(',').sort());
  });

  it('health: etcdctl\'s line per endpoint; exit 1 and the unhealthy one on stderr', async () => {
    const healthy = await ok(['endpoint', 'health', ...all()]);
    for (const endpoint of cluster.endpoints.split(',')) {
      expect(healthy).toMatch(new RegExp(`^${endpoint.replace(/\./g, '\\.')} is healthy: successfully committed proposal: took = [\\d.]+(ms|µs|s)$`, 'm'));
    }
    const json = JSON.parse(await ok(['endpoint', 'health', '-w', 'json', ...one()])) as Array<Record<string, unknown>>;
    expect(Object.keys(json[0]!)).toEqual(Object.keys((JSON.parse(etcdctlOk(['endpoint', 'health', '-w', 'json'])) as typeof json)[0]!));
    expect(await ok(['endpoint', 'health', '-w', 'table', ...one()])).toMatch(/^\+-+\+-+\+-+\+-+\+\n\| +ENDPOINT +\| HEALTH \| +TOOK +\| ERROR \|\n/);
    const sick = await dkv(['endpoint', 'health', '--endpoints', `${cluster.endpoint(0)},127.0.0.1:1`, '--command-timeout', '1s']);
    expect(sick.code).toBe(1);
    expect(sick.stdout).toMatch(/is healthy/);
    expect(sick.stderr).toMatch(/^127\.0\.0\.1:1 is unhealthy: failed to commit proposal: .+\ndkv endpoint health: unhealthy cluster\n$/);
  });

  it('defrag: etcdctl\'s line per endpoint', async () => {
    const out = await ok(['defrag', '--cluster', ...one()]);
    expect(out.trim().split('\n').sort()).toEqual(cluster.endpoints.split(',').map((e) => `Finished defragmenting etcd member[${e}]`).sort());
  });
});

describe('dkv snapshot save', () => {
  it('saves a checked snapshot, quiet on a pipe, that dkv snapshot restore reads back', async () => {
    await ok(['put', 'snap/k', 'v', ...all()]);
    const file = join(scratch, 'backup.db');
    const r = await dkv(['snapshot', 'save', file, ...one()]);
    expect(r).toEqual({ code: 0, stdout: `Snapshot saved at ${file}\n`, stderr: '' });
    expect(existsSync(`${file}.part`)).toBe(false);
    const restored = await dkv(['snapshot', 'restore', file, '--name', 'r1', '--data-dir', join(scratch, 'r1'), '--initial-cluster', 'r1=http://127.0.0.1:1', '--initial-advertise-peer-urls', 'http://127.0.0.1:1']);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toMatch(/^restored \d+ keys at revision \d+ into .*r1 for member r1\n$/);
    const unreachable = await dkv(['snapshot', 'save', join(scratch, 'never.db'), '--endpoints', '127.0.0.1:1', '--command-timeout', '1s']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^dkv snapshot save: /);
    expect(existsSync(join(scratch, 'never.db'))).toBe(false);
  });
});

describe('dkv snapshot save on a terminal', () => {
  it('shows the bytes received on stderr when it is a terminal', () => {
    const file = join(scratch, 'tty.db');
    const quote = (arg: string): string => `'${arg.replace(/'/g, `'\\''`)}'`;
    const command = [process.execPath, bin, 'snapshot', 'save', file, '--endpoints', cluster.endpoint(0)].map(quote).join(' ');
    // script(1) runs the command on a pseudo-terminal (stdout and stderr both), its output on our stdout.
    const r = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', timeout: commandTimeoutMs });
    expect(r.status, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/received \d+ bytes/);
    expect(r.stdout).toContain(`Snapshot saved at ${file}`);
    expect(existsSync(file)).toBe(true);
  });
});

describe('the command line itself', () => {
  const commands = [
    ['get'], ['put'], ['del'], ['txn'], ['watch'], ['compact'], ['member'], ['member', 'list'], ['member', 'add'],
    ['endpoint'], ['endpoint', 'status'], ['endpoint', 'health'], ['defrag'], ['snapshot'], ['snapshot', 'save'],
    ['snapshot', 'restore'], ['lease'], ['lease', 'grant'], ['lock'], ['elect'], ['counter'], ['dev'],
  ];

  it('--help of every command and subcommand prints its usage on stdout, exit 0', async () => {
    for (let i = 0; i < commands.length; i += 4) {
      const batch = commands.slice(i, i + 4);
      const results = await Promise.all(batch.map((c) => dkv([...c, '--help'])));
      batch.forEach((c, j) => {
        expect(results[j]!.code, c.join(' ')).toBe(0);
        expect(results[j]!.stdout, c.join(' ')).toMatch(new RegExp(`^Usage: dkv ${c[0]}`));
        expect(results[j]!.stderr, c.join(' ')).toBe('');
      });
    }
    expect((await dkv(['get', '-h'])).stdout).toMatch(/^Usage: dkv get/);
  });

  it('usage errors: "dkv <command>: …" and the usage on stderr, exit 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['get'], /^dkv get: get needs a KEY\n\nUsage: dkv get/],
      [['get', 'k', '--prefix', '--from-key'], /^dkv get: --prefix and --from-key cannot be set together\n\nUsage: dkv get/],
      [['get', 'k', '-w', 'yaml'], /^dkv get: --write-out must be one of simple, json, table, got "yaml"\n\nUsage/],
      [['get', 'k', '-w', 'table'], /^dkv get: table output is not supported by dkv get/],
      [['get', 'k', '--limit', 'x'], /^dkv get: --limit must be a whole number/],
      [['put', 'k', 'v', '--lease', 'xyz'], /^dkv put: a lease id is 1 to 16 hex digits/],
      [['put', 'k', 'v', '--ignore-value'], /^dkv put: VALUE cannot be given with --ignore-value/],
      [['compact'], /^dkv compact: compact needs one argument, the revision\n\nUsage: dkv compact/],
      [['member', 'frob'], /^dkv member: unknown member subcommand "frob"\n\nUsage: dkv member/],
      [['member', 'add', 'x'], /^dkv member: member add needs --peer-urls/],
      [['endpoint'], /^dkv endpoint: endpoint needs a subcommand/],
      [['snapshot', 'save'], /^dkv snapshot save: snapshot save needs a FILE\n\nUsage: dkv snapshot save/],
      [['snapshot'], /^dkv snapshot: unknown snapshot subcommand "--endpoints"\n\nUsage: dkv snapshot save/],
      [['lease'], /^dkv lease: lease needs a subcommand/],
      [['counter'], /^dkv counter: counter needs an action/],
      [['get', 'k', '--command-timeout', 'soon'], /^dkv get: --command-timeout must be a duration/],
    ];
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const results = await Promise.all(batch.map(([args]) => dkv([...args, '--endpoints', '127.0.0.1:1'])));
      batch.forEach(([args, stderr], j) => {
        expect(results[j]!.code, args.join(' ')).toBe(2);
        expect(results[j]!.stdout, args.join(' ')).toBe('');
        expect(results[j]!.stderr, args.join(' ')).toMatch(stderr);
      });
    }
  });

  it('a mistyped flag gets the nearest one suggested, in every command', async () => {
    const cases: Array<[string[], string]> = [
      [['get', 'k', '--prfix'], '--prfix (did you mean --prefix?)'],
      [['get', 'k', '--print-values-only'], '--print-values-only (did you mean --print-value-only?)'],
      [['put', 'k', 'v', '--prevkv'], '--prevkv (did you mean --prev-kv?)'],
      [['del', 'k', '--form-key'], '--form-key (did you mean --from-key?)'],
      [['watch', 'k', '--progres-notify'], '--progres-notify (did you mean --progress-notify?)'],
      [['txn', '--interactiv'], '--interactiv (did you mean --interactive?)'],
      [['compact', '1', '--phisical'], '--phisical (did you mean --physical?)'],
      [['member', 'add', 'x', '--peer-url', 'http://a:1'], '--peer-url (did you mean --peer-urls?)'],
      [['endpoint', 'status', '--clustr'], '--clustr (did you mean --cluster?)'],
      [['defrag', '--endpoint', 'x'], '--endpoint (did you mean --endpoints?)'],
      [['snapshot', 'save', 'f', '--write-ot', 'json'], '--write-ot (did you mean --write-out?)'],
      [['lease', 'grant', '10', '--jsn'], '--jsn (did you mean --json?)'],
      [['lock', 'n', '--tll', '5'], '--tll (did you mean --ttl?)'],
      [['elect', 'n', '--lisen'], '--lisen (did you mean --listen?)'],
      [['counter', 'get', 'k', '--consistncy', 's'], '--consistncy (did you mean --consistency?)'],
      [['dev', '--node', '3'], '--node (did you mean --nodes?)'],
    ];
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const results = await Promise.all(batch.map(([args]) => dkv(args)));
      batch.forEach(([args, message], j) => {
        expect(results[j]!.code, args.join(' ')).toBe(2);
        expect(results[j]!.stderr, args.join(' ')).toContain(`: unknown flag ${message}\n\nUsage: dkv ${args[0]}`);
      });
    }
    const command = await dkv(['gte']);
    expect([command.code, command.stderr.split('\n')[0]]).toEqual([2, 'dkv: unknown command "gte" (did you mean get?)']);
  });

  it('an unreachable cluster: "dkv <command>: …" on stderr, exit 1', async () => {
    const results = await Promise.all([['get', 'k'], ['put', 'k', 'v'], ['member', 'list'], ['lease', 'list']].map((args) => dkv([...args, '--endpoints', '127.0.0.1:1', '--command-timeout', '1s'])));
    for (const [i, name] of ['get', 'put', 'member', 'lease'].entries()) {
      expect(results[i]!.code, name).toBe(1);
      expect(results[i]!.stdout, name).toBe('');
      expect(results[i]!.stderr, name).toMatch(new RegExp(`^dkv ${name}: .+\\n$`));
    }
  });

  it('endpoints from $DKV_ENDPOINTS, else $ETCDCTL_ENDPOINTS; --endpoints wins', async () => {
    await ok(['put', 'env/k', 'v', ...all()]);
    expect(await dkv(['get', 'env/k', '--print-value-only'], { env: { DKV_ENDPOINTS: cluster.endpoints } })).toMatchObject({ code: 0, stdout: 'v\n' });
    expect(await dkv(['get', 'env/k', '--print-value-only'], { env: { ETCDCTL_ENDPOINTS: cluster.endpoint(1) } })).toMatchObject({ code: 0, stdout: 'v\n' });
    const overridden = await dkv(['get', 'env/k', '--endpoints', '127.0.0.1:1', '--command-timeout', '1s'], { env: { DKV_ENDPOINTS: cluster.endpoints } });
    expect(overridden.code).toBe(1);
  });
});
