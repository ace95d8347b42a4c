/**
 * The `dkv` command. Each subcommand lives in its own module and is loaded only when used.
 */

export const usage = `dkv — Clustron DKV

Usage: dkv <command> [options]

Commands:
  dev            start a local cluster of dkv server processes (npm start)
  server         run one etcd-compatible node (etcd's flag names; --help lists them)
  instance create|start|stop|restart|status|logs|rm|list NAME
                 instances of dkv server on this host, each with its own config, data, ports,
                 log and pid file under $DKV_HOME (default ~/.dkv)
  config check FILE
                 validate a dkv server config file (one message per bad field)
  get KEY [RANGE_END]
                 read keys (--prefix, --from-key, --rev, --limit, --sort-by …)
  put KEY [VALUE]
                 write a key (VALUE from stdin when omitted; --lease, --prev-kv)
  del KEY [RANGE_END]
                 delete keys, printing how many (--prefix, --from-key, --prev-kv)
  txn [-i]       a transaction in etcdctl's syntax, read from stdin
  watch KEY [RANGE_END]
                 print a key's or range's changes until Ctrl-C (--prefix, --rev)
  compact REV    discard history before revision REV (--physical)
  member list|add|remove|update|promote
                 the cluster's members (etcdctl member)
  endpoint status|health [--cluster]
                 each endpoint's status, or whether it commits (etcdctl endpoint)
  defrag         defragment each endpoint's store
  snapshot save FILE | restore FILE …
                 save a member's snapshot to FILE; restore a new cluster's data directories
                 from one (also from "etcdctl snapshot save" against DKV)
  counter incr|decr|get|set|del KEY [N]
                 atomic 64-bit counters of a running cluster (dkv.v1.Counter)
  store create NAME --prefix P [--shards N] [--replicas R] | list | describe NAME | drop NAME
                 the cluster's stores: keyspaces mounted on key prefixes, split into shards
                 (dkv.v1.Admin), each shard a Raft group of its own
  shard list | describe ID [--cluster] | split ID [--at KEY] | move ID --from M --to M
                 the cluster's shards (the meta shard, the default store's, every store's),
                 each endpoint's replica of one: Raft state, indexes, revision, size; the
                 online split of a store's shard in two; the move of a placed shard's replica
  user add|get|list|delete|passwd|grant-role|revoke-role
                 the cluster's users (etcdctl user)
  role add|get|list|delete|grant-permission|revoke-permission
                 the cluster's roles and their key permissions (etcdctl role)
  auth enable|disable|status
                 turn authentication on or off, or show whether it is on (etcdctl auth)
  demo           run a 3-node Raft group in this process on a simulated network and narrate
                 an election, replication, a leader crash, failover and catch-up (npm run demo)
  sim            run the deterministic Raft simulator over many random fault schedules
                 (partitions, loss, duplication, reordering, crashes, membership changes)
  jepsen sim     partition tests of the real Raft core and KV state machine on a simulated
                 cluster, clients' histories checked for linearizability and watch guarantees
  jepsen run     partition tests of a real local cluster (DKV, or etcd with --target etcd):
                 proxied peer links, kills, pauses; writes a report with an HTML timeline
  lease          etcd leases: grant, revoke, keep-alive, timetolive, list
  lock NAME [-- COMMAND…]
                 hold a lock of a running cluster (etcdctl lock), printing or passing on its
                 fencing token; with COMMAND, run it holding the lock
  elect NAME VALUE | elect NAME --listen
                 campaign in an election until interrupted, or print its leaders (etcdctl elect)
  bench raft     measure the Raft core's throughput in-process (zero-latency simulation)
  bench log      measure the LevelDB log store's group commit (1 and 8 shards, synced)
  bench put|range|txn-put|watch|lease-keepalive|lease-grant
                 load an etcd-API cluster (DKV or etcd) like etcd's benchmark tool
  bench counter  atomic increments: dkv.v1.Counter on DKV, a Txn compare-and-swap loop on etcd
  bench lock     Lock → Unlock cycles per second under contention (etcd's Lock service)
  bench footprint
                 one node each of DKV and etcd: memory per key, bulk load, restart, overwrites
  help           show this text; "dkv <command> --help" shows a command's options

The commands that call a cluster (get … snapshot save, counter, store, shard, user, role, auth,
lease, lock, elect) take etcdctl's flags and print what etcdctl prints:
  --endpoints E          host:port,… (default $DKV_ENDPOINTS, else $ETCDCTL_ENDPOINTS, else
                         127.0.0.1:2379); the next endpoint is tried when one is unreachable
  -w, --write-out F      simple (default), json (etcdctl's -w json), or table (member list,
                         endpoint status|health, store list|describe, shard list|describe|split|move)
  --command-timeout D    each call's deadline (default 5s)
  --user NAME[:PASSWORD] authenticate as NAME once per run, each call then carrying the token
                         (default $DKV_USER, else $ETCDCTL_USER); without a password (--password,
                         $DKV_PASSWORD, $ETCDCTL_PASSWORD) it is asked for on the terminal
  --password P           NAME's password
  -h, --help             the command's usage
Errors print as "dkv <command>: <message>" on stderr. Exit status: 0 done, 1 the server
refused or could not be reached, 2 bad command line (with the usage on stderr).
  --version      print DKV's version, the etcd API version it speaks, its git commit and Node's
                 version (also "dkv server --version")
`;

/** For the "did you mean" of a mistyped command. */
const commandNames = ['dev', 'server', 'instance', 'config', 'get', 'put', 'del', 'txn', 'watch', 'compact', 'member', 'endpoint', 'defrag', 'snapshot', 'counter', 'store', 'shard', 'user', 'role', 'auth', 'demo', 'sim', 'jepsen', 'lease', 'lock', 'elect', 'bench', 'help'];

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(usage);
      return 0;
    case '--version':
    case '-version':
    case 'version': {
      const { versionText } = await import('../server/version.js');
      process.stdout.write(versionText());
      return 0;
    }
    case 'demo': {
      const { demoCommand } = await import('./demo.js');
      return demoCommand(rest);
    }
    case 'sim': {
      const { simCommand } = await import('./sim.js');
      return simCommand(rest);
    }
    case 'jepsen': {
      const { jepsenCommand } = await import('./jepsen.js');
      return jepsenCommand(rest);
    }
    case 'dev': {
      const { devCommand } = await import('./dev.js');
      return devCommand(rest);
    }
    case 'snapshot': {
      const { snapshotCommand } = await import('./snapshot.js');
      return snapshotCommand(rest);
    }
    case 'counter': {
      const { counterCommand } = await import('./counter.js');
      return counterCommand(rest);
    }
    case 'store': {
      const { storeCommand } = await import('./store.js');
      return storeCommand(rest);
    }
    case 'shard': {
      const { shardCommand } = await import('./shard.js');
      return shardCommand(rest);
    }
    case 'server': {
      const { serverCommand } = await import('./server.js');
      return serverCommand(rest);
    }
    case 'instance': {
      const { instanceCommand } = await import('./instance.js');
      return instanceCommand(rest);
    }
    case 'config': {
      const { configCommand } = await import('./config.js');
      return configCommand(rest);
    }
    case 'lease': {
      const { leaseCommand } = await import('./lease.js');
      return leaseCommand(rest);
    }
    case 'lock': {
      const { lockCommand } = await import('./lock.js');
      return lockCommand(rest);
    }
    case 'elect': {
      const { electCommand } = await import('./elect.js');
      return electCommand(rest);
    }
    case 'get':
    case 'put':
    case 'del':
    case 'txn':
    case 'compact': {
      const kv = await import('./kv.js');
      const commands = { get: kv.getCommand, put: kv.putCommand, del: kv.delCommand, txn: kv.txnCommand, compact: kv.compactCommand };
      return commands[command](rest);
    }
    case 'user':
    case 'role':
    case 'auth': {
      const auth = await import('./auth.js');
      const commands = { user: auth.userCommand, role: auth.roleCommand, auth: auth.authCommand };
      return commands[command](rest);
    }
    case 'watch': {
      const { watchCommand } = await import('./watch.js');
      return watchCommand(rest);
    }
    case 'member': {
      const { memberCommand } = await import('./member.js');
      return memberCommand(rest);
    }
    case 'endpoint':
    case 'defrag': {
      const { endpointCommand, defragCommand } = await import('./endpoint.js');
      return command === 'defrag' ? defragCommand(rest) : endpointCommand(rest);
    }
    case 'bench': {
      const { benchCommand } = await import('./bench.js');
      return benchCommand(rest);
    }
    default: {
      const { closest } = await import('./args.js');
      const suggestion = closest(command, commandNames);
      process.stderr.write(`dkv: unknown command "${command}"${suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`}\n\n${usage}`);
      return 2;
    }
  }
}
