/** `dkv bench <target>`: benchmarks that print numbers (they never gate CI). */
import { intOption, parseOptions, UsageError, withUsage } from './args';

export const benchHelp = `Usage: dkv bench raft|log [--seconds S]

  raft   the Raft core's throughput: a 3-node group in one process on the simulator with zero
         network and disk latency; committed entries per second with one proposal per round and
         with batches of 64 and 1,024 proposals (goals: 50,000 rounds/s; 1,000,000 entries/s)
  log    the LevelDB log store's group commit: synced entries per second with 1 shard and with
         8 shards sharing one synced batch per round, against one synced batch per shard
         (written under the system's temporary directory)

Options:
  --seconds S   how long each measurement runs (default 3)
  -h, --help    show this text
`;

export async function benchCommand(args: string[]): Promise<number> {
  return withUsage(benchHelp, async () => {
    const [target, ...rest] = args;
    if (target === '--help' || target === '-h' || target === undefined) {
      process.stdout.write(benchHelp);
      return target === undefined ? 2 : 0;
    }
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
      const { runGroupCommitBench } = await import('../../bench/group-commit');
      await runGroupCommitBench({ seconds, print });
      return 0;
    }
    const { runRaftBench } = await import('../../bench/raft-core');
    runRaftBench({ seconds, print });
    return 0;
  });
}
