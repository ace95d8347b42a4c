/** `dkv bench <target>`: benchmarks that print numbers (they never gate CI). */
import { intOption, parseEndpoints, parseOptions, UsageError, withUsage } from './args.js';
import { type Credentials, credentialsOf, credentialsOptionsHelp } from './credentials.js';
import { Endpoints, commandTimeoutMs, failureMessage } from './remote.js';

export const benchHelp = `Usage: dkv bench raft|log [--seconds S]
       dkv bench put|range|txn-put [--endpoints E] [--conns N] [--clients N] [--total N] [--store NAME] ...
       dkv bench watch [--endpoints E] [--conns N] [--streams N] [--watch-per-stream N] ...
       dkv bench lease-keepalive|lease-grant [--endpoints E] [--conns N] [--clients N] [--total N]
       dkv bench counter [--endpoints E] [--conns N] [--clients N] [--total N] [--counters N] ...
       dkv bench lock [--endpoints E] [--conns N] [--clients N] [--total N | --duration S] [--locks N]
       dkv bench footprint [--target dkv,etcd] [--keys N] [--settle-ms MS] [--server-args "..."] ...
       (each benchmark that calls a cluster also takes --user NAME[:PASSWORD] [--password P])

  raft     the Raft core's throughput: a 3-node group in one process on the simulator with zero
           network and disk latency; committed entries per second with one proposal per round and
           with batches of 64 and 1,024 proposals (goals: 50,000 rounds/s; 1,000,000 entries/s)
  log      the LevelDB log store's group commit: synced entries per second with 1 shard and with
           8 shards sharing one synced batch per round, against one synced batch per shard
           (written under the system's temporary directory)
  put      etcd v3 Put requests against a running cluster (DKV or etcd), like etcd's
           "benchmark put"; prints requests/s, latency p50/p90/p99/max and errors by message
  range    etcd v3 Range requests of one key each, linearizable or serializable
  txn-put  etcd v3 Txn requests with no compares and --txn-ops puts in the success branch
  watch    etcd v3 Watch, like etcd's "benchmark watch": opens --streams streams with
           --watch-per-stream watchers each, waits until all are created, then puts at --put-rate;
           prints events delivered per second, put-to-delivery latency p50/p90/p99/max and
           errors, and checks that every watcher got exactly its key's puts in revision order
  lease-keepalive
           etcd v3 LeaseKeepAlive, like etcd's "benchmark lease-keepalive": each client grants a
           lease (TTL 100 s) and renews it over a stream of its own, one renewal in flight, until
           --total renewals; prints requests/s, latency p50/p90/p99/max and errors by message
           (an answer with TTL 0, a lost lease, is an error); the leases are revoked at the end.
           DKV proposes every renewal through Raft; etcd renews in its leader's memory
  lease-grant
           etcd v3 LeaseGrant then LeaseRevoke of that lease, one call in flight per client,
           --total cycles; prints cycles/s and the latency of grants, revokes and whole cycles
  counter  atomic increments of --counters keys: dkv.v1.Counter/Increment against DKV; against
           etcd (which has no counter) a compare-and-swap loop: a linearizable Range, then a Txn
           comparing the key's mod_revision and putting value + 1, retried on a lost race;
           prints increments/s, latency p50/p90/p99/max, RPCs per increment and errors, and
           checks that the counters moved by exactly the increments acknowledged
  lock     etcd v3 Lock service (v3lockpb, served by DKV and etcd alike) under contention: each
           client has a session lease (TTL 60 s, kept alive on a LeaseKeepAlive stream of its
           own) and loops Lock(name, lease) → Unlock(key) on one of --locks names, one call in
           flight; prints acquire → release cycles/s, latency p50/p90/p99/max of acquires (the
           wait included), releases and whole cycles, and errors; checks that no two clients
           ever held one lock at once (each hold, from Lock answered to Unlock sent, against the
           others of its name) and that no lock key is left after the run
  footprint
           one node of each --target (a dkv server of this build, and etcd from PATH), each on a
           fresh data directory: RSS of the empty node; --keys keys (--key-size + --val-size
           bytes) loaded by Txns of --txn-ops puts, --clients in flight (keys/s); RSS after
           --settle-ms and memory per key ((RSS - empty RSS) / keys); SIGKILL and a restart
           (ms to the first acknowledged Put); the keys written again and compacted (RSS and its
           growth); every key deleted and compacted (RSS against the empty node's). Prints a
           table with DKV/etcd ratios, or a JSON line per target with --json

Options (put, range, txn-put, watch, lease-keepalive, lease-grant, counter, lock: a cluster with
auth enabled; the run authenticates once, before it starts, and every call carries the token):
${credentialsOptionsHelp}
Options (raft, log):
  --seconds S   how long each measurement runs (default 3)

Options (put, range, txn-put; as in etcd's benchmark tool):
  --endpoints E         comma-separated host:port (http:// accepted) (default 127.0.0.1:2379)
  --conns N             gRPC connections, spread over the endpoints round-robin (default 1)
  --clients N           concurrent requests in flight; client i uses connection i mod N (default 1)
  --total N             requests to send (default 10000)
  --key-size N          key bytes; key n is Go's varint of n, zero-padded (default 8)
  --val-size N          value bytes (put, txn-put) (default 8)
  --key-space-size N    distinct keys, drawn at random unless --sequential-keys (default 1)
  --sequential-keys     request i uses key i mod key-space-size
  --consistency l|s     range: linearizable (l) or serializable (s) (default l)
  --txn-ops N           txn-put: puts on distinct keys per txn (default 1)
  --rate N              requests per second over all clients, 0 = unlimited (default 0)
  --store NAME          DKV only: write and read the keys of store NAME (its prefix looked up
                        with dkv.v1.Admin StoreDescribe): each key is the prefix, one byte that
                        spreads the keys evenly over the store's shards (key n's low 8 bits,
                        reversed; a txn's puts share its first key's byte, so one shard), then
                        the --key-size key
  --json                print one JSON line instead of the summary
  -h, --help            show this text

Options (footprint):
  --target T            dkv, etcd or dkv,etcd (default dkv,etcd)
  --keys N              keys to load (default 500000)
  --key-size N          key bytes (default 16)
  --val-size N          value bytes (default 100)
  --txn-ops N           puts per Txn (default 128)
  --clients N           Txns in flight (default 8)
  --settle-ms MS        wait before each RSS reading (default 20000)
  --server-args "A B"   more dkv server flags, space-separated
  --etcd PATH           the etcd binary (default etcd)
  --keep                keep the data directories (the servers' logs)
  --json                one JSON line per target instead of the table

Options (watch):
  --endpoints E         comma-separated host:port (http:// accepted) (default 127.0.0.1:2379)
  --conns N             gRPC connections over the endpoints round-robin; stream s and the
                        putter's worker w use connection s (w) mod N (default 1)
  --streams N           watch streams (default 10)
  --watch-per-stream N  watchers per stream; watcher g = s*N+i watches key g mod key-space-size
                        (default 100)
  --key-space-size N    watched keys; put n writes key n mod N, so a put reaches about
                        streams*watch-per-stream/N watchers (default 100)
  --prefix              watch the prefix only that key has (a range watch) instead of the key
  --put-total N         puts to make (default 1000)
  --put-rate N          puts per second, 0 = as fast as they go; at most 100 puts are in
                        flight either way (default 0)
  --key-size N          key bytes; key n is Go's varint of n, zero-padded (default 8)
  --val-size N          value bytes; the first bytes carry the put's number (default 8)
  --json                print one JSON line instead of the summary
  -h, --help            show this text

Options (lease-keepalive, lease-grant):
  --endpoints E         comma-separated host:port (http:// accepted) (default 127.0.0.1:2379)
  --conns N             gRPC connections, spread over the endpoints round-robin (default 1)
  --clients N           concurrent clients; client i uses connection i mod N (default 1)
  --total N             keep-alive requests, or grant+revoke cycles, to send (default 10000)
  --json                print one JSON line instead of the summary
  -h, --help            show this text

Options (counter):
  --endpoints E         comma-separated host:port (http:// accepted) (default 127.0.0.1:2379)
  --conns N             gRPC connections over the endpoints round-robin (default 1)
  --clients N           concurrent increments in flight; client i uses connection i mod N
                        (default 1)
  --total N             increments to make (default 10000)
  --counters N          counters (keys bench/counter/0 …), each increment picks one at random;
                        1 puts every client on one key (default 1)
  --method M            counter, cas, or auto: counter when the first endpoint serves
                        dkv.v1.Counter, else cas (default auto)
  --json                print one JSON line instead of the summary
  -h, --help            show this text

Options (lock):
  --endpoints E         comma-separated host:port (http:// accepted) (default 127.0.0.1:2379)
  --conns N             gRPC connections over the endpoints round-robin (default 1)
  --clients N           concurrent clients, each with its own session lease; client i uses
                        connection i mod N (default 1)
  --total N             acquire → release cycles to start (default 10000)
  --duration S          instead of --total: start cycles for S seconds
  --locks N             lock names (bench/lock/<run id>/0 …), each cycle picks one at random;
                        1 puts every client on one lock (default 1)
  --json                print one JSON line instead of the summary
  -h, --help            show this text
`;

const loadTargets = ['put', 'range', 'txn-put'] as const;
type LoadTarget = (typeof loadTargets)[number];

function isLoadTarget(target: string): target is LoadTarget {
  return (loadTargets as readonly string[]).includes(target);
}

const leaseTargets = ['lease-keepalive', 'lease-grant'] as const;
type LeaseTarget = (typeof leaseTargets)[number];

function isLeaseTarget(target: string): target is LeaseTarget {
  return (leaseTargets as readonly string[]).includes(target);
}

export async function benchCommand(args: string[]): Promise<number> {
  return withUsage(benchHelp, async () => {
    const [target, ...rest] = args;
    if (target === '--help' || target === '-h' || target === undefined) {
      // A missing subcommand is a usage error: usage on stderr, exit 2; asked-for help goes to stdout.
      ((target === undefined) ? process.stderr : process.stdout).write(benchHelp);
      return target === undefined ? 2 : 0;
    }
    if (isLoadTarget(target)) return loadCommand(target, rest);
    if (target === 'watch') return watchCommand(rest);
    if (isLeaseTarget(target)) return leaseLoadCommand(target, rest);
    if (target === 'counter') return counterCommand(rest);
    if (target === 'lock') return lockCommand(rest);
    if (target === 'footprint') return footprintCommand(rest);
    if (target !== 'raft' && target !== 'log') throw new UsageError(`unknown benchmark "${target}"`);
    const o = parseOptions(rest, { seconds: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
    if (o.help === true) {
      process.stdout.write(benchHelp);
      return 0;
    }
    const seconds = intOption(o.seconds, 'seconds', 3, 1, 3600);
    const print = (line: string): void => {
      process.stdout.write(`${line}\n`);
    };
    if (target === 'log') {
      const { runGroupCommitBench } = await import('../../bench/group-commit.js');
      await runGroupCommitBench({ seconds, print });
      return 0;
    }
    const { runRaftBench } = await import('../../bench/raft-core.js');
    runRaftBench({ seconds, print });
    return 0;
  }, 'dkv bench');
}

export { parseEndpoints };

async function loadCommand(workload: LoadTarget, args: string[]): Promise<number> {
  const o = parseOptions(args, {
    endpoints: { type: 'string' },
    conns: { type: 'string' },
    clients: { type: 'string' },
    total: { type: 'string' },
    'key-size': { type: 'string' },
    'val-size': { type: 'string' },
    'key-space-size': { type: 'string' },
    'sequential-keys': { type: 'boolean' },
    consistency: { type: 'string' },
    'txn-ops': { type: 'string' },
    rate: { type: 'string' },
    store: { type: 'string' },
    json: { type: 'boolean' },
    ...credentialFlags,
    help: { type: 'boolean', short: 'h' },
  });
  if (o.help === true) {
    process.stdout.write(benchHelp);
    return 0;
  }
  if (o.store === '') throw new UsageError('--store needs a store name');
  const { describeLoad, formatLoadResult, loadLimits: limits, loadResultJson, runLoad, varintLength } = await import('../../bench/etcd-load.js');
  if (o.consistency !== undefined && workload !== 'range') throw new UsageError(`--consistency applies to range only, not ${workload}`);
  if (o.consistency !== undefined && o.consistency !== 'l' && o.consistency !== 's') {
    throw new UsageError(`--consistency must be l (linearizable) or s (serializable), got "${o.consistency}"`);
  }
  if (o['txn-ops'] !== undefined && workload !== 'txn-put') throw new UsageError(`--txn-ops applies to txn-put only, not ${workload}`);
  if (o['val-size'] !== undefined && workload === 'range') throw new UsageError('--val-size applies to put and txn-put, not range');
  const keySpaceSize = intOption(o['key-space-size'], 'key-space-size', 1, 1, limits.keySpaceSizeMax);
  const keySize = intOption(o['key-size'], 'key-size', 8, 1, limits.keySizeMax);
  const keyBytesNeeded = varintLength(keySpaceSize - 1);
  if (keySize < keyBytesNeeded) {
    throw new UsageError(`--key-size ${keySize} is too small for --key-space-size ${keySpaceSize}: keys need at least ${keyBytesNeeded} bytes`);
  }
  const txnOps = intOption(o['txn-ops'], 'txn-ops', 1, 1, limits.txnOpsMax);
  if (txnOps > keySpaceSize) throw new UsageError(`--txn-ops ${txnOps} needs --key-space-size of at least ${txnOps} (a txn may not put one key twice)`);
  const options = {
    workload,
    endpoints: parseEndpoints(o.endpoints ?? '127.0.0.1:2379'),
    conns: intOption(o.conns, 'conns', 1, 1, limits.connsMax),
    clients: intOption(o.clients, 'clients', 1, 1, limits.clientsMax),
    total: intOption(o.total, 'total', 10_000, 1, limits.totalMax),
    keySize,
    valSize: intOption(o['val-size'], 'val-size', 8, 0, limits.valSizeMax),
    keySpaceSize,
    sequentialKeys: o['sequential-keys'] === true,
    consistency: o.consistency === 's' ? 's' : 'l',
    rate: intOption(o.rate, 'rate', 0, 0, limits.rateMax),
    txnOps,
  } as const;
  const credentials = credentialsOf(o, `dkv bench ${workload}`);
  let store: { name: string; prefix: Uint8Array } | undefined;
  if (o.store !== undefined) {
    try {
      store = { name: o.store, prefix: await storePrefix(options.endpoints, o.store, credentials) };
    } catch (error) {
      process.stderr.write(`dkv bench ${workload}: --store ${o.store}: ${failureMessage(error)}\n`);
      return 1;
    }
  }
  return report({
    name: `dkv bench ${workload}`,
    json: o.json === true,
    endpoints: options.endpoints,
    credentials,
    describe: () => describeLoad({ ...options, store }),
    run: (token) => runLoad({ ...options, store, token }),
    toJson: loadResultJson,
    format: formatLoadResult,
    ok: (r) => r.errors === 0,
  });
}

async function watchCommand(args: string[]): Promise<number> {
  const o = parseOptions(args, {
    endpoints: { type: 'string' },
    conns: { type: 'string' },
    streams: { type: 'string' },
    'watch-per-stream': { type: 'string' },
    'put-rate': { type: 'string' },
    'put-total': { type: 'string' },
    'key-size': { type: 'string' },
    'val-size': { type: 'string' },
    'key-space-size': { type: 'string' },
    prefix: { type: 'boolean' },
    json: { type: 'boolean' },
    ...credentialFlags,
    help: { type: 'boolean', short: 'h' },
  });
  if (o.help === true) {
    process.stdout.write(benchHelp);
    return 0;
  }
  const { varintLength } = await import('../../bench/etcd-load.js');
  const { describeWatchLoad, expectedEventCount, formatWatchLoadResult, runWatchLoad, seqBytesFor, watchLoadLimits: limits, watchLoadResultJson } =
    await import('../../bench/watch-load.js');
  const streams = intOption(o.streams, 'streams', 10, 1, limits.streamsMax);
  const watchPerStream = intOption(o['watch-per-stream'], 'watch-per-stream', 100, 1, limits.watchPerStreamMax);
  if (streams * watchPerStream > limits.watchersMax) {
    throw new UsageError(`--streams ${streams} × --watch-per-stream ${watchPerStream} is more than ${limits.watchersMax} watchers`);
  }
  const keySpaceSize = intOption(o['key-space-size'], 'key-space-size', 100, 1, limits.keySpaceSizeMax);
  const keySize = intOption(o['key-size'], 'key-size', 8, 1, limits.keySizeMax);
  const keyBytesNeeded = varintLength(keySpaceSize - 1);
  if (keySize < keyBytesNeeded) {
    throw new UsageError(`--key-size ${keySize} is too small for --key-space-size ${keySpaceSize}: keys need at least ${keyBytesNeeded} bytes`);
  }
  const putTotal = intOption(o['put-total'], 'put-total', 1_000, 1, limits.putTotalMax);
  const valSize = intOption(o['val-size'], 'val-size', 8, 1, limits.valSizeMax);
  const seqBytes = seqBytesFor(putTotal);
  if (valSize < seqBytes) {
    throw new UsageError(`--val-size ${valSize} is too small for --put-total ${putTotal}: values carry the put's number in at least ${seqBytes} bytes`);
  }
  const options = {
    endpoints: parseEndpoints(o.endpoints ?? '127.0.0.1:2379'),
    conns: intOption(o.conns, 'conns', 1, 1, limits.connsMax),
    streams,
    watchPerStream,
    putRate: intOption(o['put-rate'], 'put-rate', 0, 0, limits.putRateMax),
    putTotal,
    keySize,
    valSize,
    keySpaceSize,
    prefix: o.prefix === true,
  } as const;
  const expected = expectedEventCount(options);
  if (expected > limits.eventsMax) {
    throw new UsageError(`this run would deliver ${expected} events, more than ${limits.eventsMax}: lower --put-total or the watchers per key`);
  }
  return report({
    name: `dkv bench watch`,
    json: o.json === true,
    endpoints: options.endpoints,
    credentials: credentialsOf(o, `dkv bench watch`),
    describe: () => describeWatchLoad(options),
    run: (token) => runWatchLoad({ ...options, token }),
    toJson: watchLoadResultJson,
    format: formatWatchLoadResult,
    ok: (r) => r.errors === 0,
  });
}

async function leaseLoadCommand(workload: LeaseTarget, args: string[]): Promise<number> {
  const o = parseOptions(args, {
    endpoints: { type: 'string' },
    conns: { type: 'string' },
    clients: { type: 'string' },
    total: { type: 'string' },
    json: { type: 'boolean' },
    ...credentialFlags,
    help: { type: 'boolean', short: 'h' },
  });
  if (o.help === true) {
    process.stdout.write(benchHelp);
    return 0;
  }
  const { describeLeaseLoad, formatLeaseLoadResult, leaseLoadLimits: limits, leaseLoadResultJson, runLeaseLoad } = await import('../../bench/lease-load.js');
  const options = {
    workload,
    endpoints: parseEndpoints(o.endpoints ?? '127.0.0.1:2379'),
    conns: intOption(o.conns, 'conns', 1, 1, limits.connsMax),
    clients: intOption(o.clients, 'clients', 1, 1, limits.clientsMax),
    total: intOption(o.total, 'total', 10_000, 1, limits.totalMax),
  } as const;
  return report({
    name: `dkv bench ${workload}`,
    json: o.json === true,
    endpoints: options.endpoints,
    credentials: credentialsOf(o, `dkv bench ${workload}`),
    describe: () => describeLeaseLoad(options),
    run: (token) => runLeaseLoad({ ...options, token }),
    toJson: leaseLoadResultJson,
    format: formatLeaseLoadResult,
    ok: (r) => r.errors === 0,
  });
}

async function counterCommand(args: string[]): Promise<number> {
  const o = parseOptions(args, {
    endpoints: { type: 'string' },
    conns: { type: 'string' },
    clients: { type: 'string' },
    total: { type: 'string' },
    counters: { type: 'string' },
    method: { type: 'string' },
    json: { type: 'boolean' },
    ...credentialFlags,
    help: { type: 'boolean', short: 'h' },
  });
  if (o.help === true) {
    process.stdout.write(benchHelp);
    return 0;
  }
  const method = o.method ?? 'auto';
  if (method !== 'auto' && method !== 'counter' && method !== 'cas') throw new UsageError(`--method must be counter, cas or auto, got "${method}"`);
  const { counterLoadLimits: limits, counterLoadResultJson, describeCounterLoad, formatCounterLoadResult, runCounterLoad } = await import('../../bench/counter.js');
  const options = {
    endpoints: parseEndpoints(o.endpoints ?? '127.0.0.1:2379'),
    conns: intOption(o.conns, 'conns', 1, 1, limits.connsMax),
    clients: intOption(o.clients, 'clients', 1, 1, limits.clientsMax),
    total: intOption(o.total, 'total', 10_000, 1, limits.totalMax),
    counters: intOption(o.counters, 'counters', 1, 1, limits.countersMax),
    method,
  } as const;
  return report({
    name: `dkv bench counter`,
    json: o.json === true,
    endpoints: options.endpoints,
    credentials: credentialsOf(o, `dkv bench counter`),
    describe: () => describeCounterLoad(options),
    run: (token) => runCounterLoad({ ...options, token }),
    toJson: counterLoadResultJson,
    format: formatCounterLoadResult,
    ok: (r) => r.errors === 0 && r.consistent,
  });
}

async function lockCommand(args: string[]): Promise<number> {
  const o = parseOptions(args, {
    endpoints: { type: 'string' },
    conns: { type: 'string' },
    clients: { type: 'string' },
    total: { type: 'string' },
    duration: { type: 'string' },
    locks: { type: 'string' },
    json: { type: 'boolean' },
    ...credentialFlags,
    help: { type: 'boolean', short: 'h' },
  });
  if (o.help === true) {
    process.stdout.write(benchHelp);
    return 0;
  }
  if (o.total !== undefined && o.duration !== undefined) throw new UsageError('give --total or --duration, not both');
  const { describeLockLoad, formatLockLoadResult, lockLoadLimits: limits, lockLoadOk, lockLoadResultJson, runLockLoad } = await import('../../bench/lock.js');
  const durationSeconds = o.duration === undefined ? undefined : intOption(o.duration, 'duration', 10, 1, limits.durationSecondsMax);
  const options = {
    endpoints: parseEndpoints(o.endpoints ?? '127.0.0.1:2379'),
    conns: intOption(o.conns, 'conns', 1, 1, limits.connsMax),
    clients: intOption(o.clients, 'clients', 1, 1, limits.clientsMax),
    total: durationSeconds === undefined ? intOption(o.total, 'total', 10_000, 1, limits.totalMax) : undefined,
    durationSeconds,
    locks: intOption(o.locks, 'locks', 1, 1, limits.locksMax),
  } as const;
  return report({
    name: `dkv bench lock`,
    json: o.json === true,
    endpoints: options.endpoints,
    credentials: credentialsOf(o, `dkv bench lock`),
    describe: () => describeLockLoad(options),
    run: (token) => runLockLoad({ ...options, token }),
    toJson: lockLoadResultJson,
    format: formatLockLoadResult,
    ok: lockLoadOk,
  });
}

async function footprintCommand(args: string[]): Promise<number> {
  const o = parseOptions(args, {
    target: { type: 'string' },
    keys: { type: 'string' },
    'key-size': { type: 'string' },
    'val-size': { type: 'string' },
    'txn-ops': { type: 'string' },
    clients: { type: 'string' },
    'settle-ms': { type: 'string' },
    'server-args': { type: 'string' },
    etcd: { type: 'string' },
    keep: { type: 'boolean' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (o.help === true) {
    process.stdout.write(benchHelp);
    return 0;
  }
  const { footprintDefaults: d, footprintTable, runFootprintBench } = await import('../../bench/footprint.js');
  const targets = (o.target ?? 'dkv,etcd').split(',');
  for (const target of targets) if (target !== 'dkv' && target !== 'etcd') throw new UsageError(`--target: dkv, etcd or dkv,etcd, got "${target}"`);
  if (targets.includes('dkv')) {
    // The node runs what bin/dkv.js runs: without a usable build, the sources through tsx, whose
    // loader and transpiler the figures would then include.
    const { buildUnusable } = await import('../package-root.js');
    const unusable = await buildUnusable();
    const remedy = unusable === 'DKV_FROM_SOURCE=1' ? 'unset DKV_FROM_SOURCE' : 'run "npm run build"';
    if (unusable !== undefined) process.stderr.write(`dkv bench footprint: the DKV node runs the sources through tsx, not the build (${unusable}): ${remedy} to measure the build\n`);
  }
  const json = o.json === true;
  const print = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const results = await runFootprintBench({
    targets: targets as Array<'dkv' | 'etcd'>,
    keys: intOption(o.keys, 'keys', d.keys, 1, 100_000_000),
    keySize: intOption(o['key-size'], 'key-size', d.keySize, 12, 1024),
    valueSize: intOption(o['val-size'], 'val-size', d.valueSize, 0, 1024 * 1024),
    txnOps: intOption(o['txn-ops'], 'txn-ops', d.txnOps, 1, 128),
    clients: intOption(o.clients, 'clients', d.clients, 1, 1000),
    settleMs: intOption(o['settle-ms'], 'settle-ms', d.settleMs, 0, 600_000),
    serverArgs: (o['server-args'] ?? '').split(' ').filter((arg) => arg !== ''),
    etcdBin: o.etcd,
    keep: o.keep === true,
    print,
    onResult: json ? (result) => print(JSON.stringify(result)) : undefined,
  });
  if (!json) for (const line of footprintTable(results)) print(line);
  return 0;
}

/** A DKV store's prefix (dkv.v1.Admin StoreDescribe); refused while the store is still being created. */
async function storePrefix(endpoints: readonly string[], name: string, credentials: Credentials | undefined): Promise<Uint8Array> {
  // Loaded here, not at the top: `dkv bench --help` and usage errors do without grpc-js.
  const { longsAsStrings, methodCodec } = await import('../client/index.js');
  const remote = new Endpoints(endpoints, commandTimeoutMs, credentials);
  try {
    const r = await remote.unary(methodCodec('dkv.v1.Admin', 'StoreDescribe', longsAsStrings), { name });
    const described = r.store as { prefix?: unknown; creating?: unknown } | undefined;
    if (described?.creating === true) throw new Error('the store is still being created (create it again to finish)');
    return Buffer.isBuffer(described?.prefix) ? described.prefix : Buffer.alloc(0);
  } finally {
    remote.close();
  }
}

/** --user and --password, for the benchmarks that call a cluster (as every remote command takes them). */
const credentialFlags = { user: { type: 'string' }, password: { type: 'string' } } as const;

/**
 * The token every call of a run carries: Auth.Authenticate once, on the first endpoint that
 * answers; undefined without --user, or when the cluster's auth is not enabled (as etcdctl goes on).
 */
async function authenticate(endpoints: readonly string[], credentials: Credentials | undefined): Promise<string | undefined> {
  if (credentials === undefined) return undefined;
  const remote = new Endpoints(endpoints, commandTimeoutMs, credentials);
  try {
    return (await remote.authOptions()).token;
  } finally {
    remote.close();
  }
}

/**
 * The end every load command shares: authentication (with --user), its description (unless
 * --json), the run, then the result as one JSON line or the summary lines; exit 0 when it went
 * well, 1 when anything failed (a refused login before anything else is printed).
 */
async function report<R>(how: {
  readonly name: string;
  readonly json: boolean;
  readonly endpoints: readonly string[];
  readonly credentials: Credentials | undefined;
  describe(): string;
  run(token: string | undefined): Promise<R>;
  toJson(result: R): string;
  format(result: R): string[];
  ok(result: R): boolean;
}): Promise<number> {
  let token: string | undefined;
  try {
    token = await authenticate(how.endpoints, how.credentials);
  } catch (error) {
    process.stderr.write(`${how.name}: ${failureMessage(error)}\n`);
    return 1;
  }
  if (!how.json) process.stdout.write(`${how.describe()}\n`);
  let result: R;
  try {
    result = await how.run(token);
  } catch (error) {
    process.stderr.write(`${how.name}: ${(error as Error).message}\n`);
    return 1;
  }
  process.stdout.write(how.json ? `${how.toJson(result)}\n` : `${how.format(result).join('\n')}\n`);
  return how.ok(result) ? 0 : 1;
}
