/**
 * `dkv demo` (what `npm start` runs until the server exists): a 3-node Raft group in this process
 * on the deterministic simulator, narrated as it elects a leader, replicates writes, loses its
 * leader, fails over, and brings the crashed node back up to date.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SIM_DEFAULTS, SimCluster, type SimNode } from '../../jepsen-lite/sim/index.js';
import { intOption, parseOptions, withUsage } from './args.js';

export const demoHelp = `Usage: dkv demo [--seed S] [--fast]

Runs a 3-node Raft group in this process on a simulated network and disk (the same simulator
the tests use), and narrates: leader election, replicated writes, a leader crash, failover, a
write through a follower, and the crashed node catching up.

Options:
  --seed S     the simulation seed (default 1); a seed always plays out the same way
  --fast       do not pace the narration in real time
  -h, --help   show this text
`;

const encoder = new TextEncoder();

export async function demoCommand(args: string[]): Promise<number> {
  return withUsage(demoHelp, async () => {
    const o = parseOptions(args, {
      seed: { type: 'string' },
      fast: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (o.help === true) {
      process.stdout.write(demoHelp);
      return 0;
    }
    const seed = intOption(o.seed, 'seed', 1, 0, Number.MAX_SAFE_INTEGER);
    return new Demo(seed, o.fast !== true).run();
  }, 'dkv demo');
}

class Demo {
  private readonly cluster: SimCluster;
  private lastLeader = 0;
  private lastTerm = 0;

  constructor(
    seed: number,
    private readonly paced: boolean,
  ) {
    this.cluster = new SimCluster({
      ...SIM_DEFAULTS,
      seed,
      nodeIds: [1, 2, 3],
      network: { dropRate: 0, duplicateRate: 0, delayMinMs: 1, delayMaxMs: 8 },
      diskLatencyMinMs: 1,
      diskLatencyMaxMs: 4,
      snapshotEveryEntries: 0,
      recordApplied: true,
    });
  }

  private say(text: string): void {
    const seconds = (this.cluster.now / 1000).toFixed(2).padStart(6);
    process.stdout.write(`[${seconds}s] ${text}\n`);
  }

  /** Runs simulated time in small steps, in real time when paced, narrating leader changes. */
  private async runUntil(done: () => boolean, maxMs: number): Promise<boolean> {
    const deadline = this.cluster.now + maxMs;
    while (!done()) {
      if (this.cluster.now >= deadline) return false;
      this.cluster.runFor(20);
      this.noticeLeader();
      if (this.paced) await sleep(20);
    }
    return true;
  }

  private noticeLeader(): void {
    const leader = this.cluster.leader();
    if (leader === undefined) return;
    const term = leader.raw!.raft.term;
    if (leader.id === this.lastLeader && term === this.lastTerm) return;
    this.lastLeader = leader.id;
    this.lastTerm = term;
    this.say(`node ${leader.id} won the election for term ${term} (votes from a majority of 3)`);
  }

  private appliedEverywhere(value: string, nodes: readonly SimNode[]): boolean {
    return nodes.every((n) => n.applied.includes(value));
  }

  private async write(via: number, value: string, expectOn: readonly SimNode[]): Promise<void> {
    const refused = this.cluster.propose(via, encoder.encode(value));
    if (refused !== undefined) throw new Error(`demo proposal refused: ${refused}`);
    const ok = await this.runUntil(() => this.appliedEverywhere(value, expectOn), 5_000);
    if (!ok) throw new Error(`"${value}" was not applied in time`);
    const index = expectOn[0]!.appliedIndex;
    this.say(`committed "${value}" (index ${index}) and applied on nodes ${expectOn.map((n) => n.id).join(', ')}`);
  }

  async run(): Promise<number> {
    const c = this.cluster;
    const all = [...c.nodes.values()];
    process.stdout.write(
      'Clustron DKV demo: a 3-node Raft group in one process, on a simulated network and disk.\n' +
        'Ticks are 100 ms; a follower campaigns after 10-20 ticks without a leader (PreVote and\n' +
        'CheckQuorum on). Everything below is deterministic for a given --seed.\n\n',
    );
    this.say('nodes 1, 2 and 3 start with an empty log and no leader');
    if (!(await this.runUntil(() => c.leader() !== undefined, 10_000))) throw new Error('no leader elected');

    const leader = c.leader()!;
    for (const value of ['config/db=postgres://db-1', 'config/cache=redis://cache-1', 'lock/owner=svc-a']) {
      await this.write(leader.id, value, all);
    }

    this.say(`crashing the leader, node ${leader.id}: what it had not written to disk is lost`);
    c.crash(leader.id);
    const survivors = all.filter((n) => n.id !== leader.id);
    const crashedAt = c.now;
    if (!(await this.runUntil(() => c.leader() !== undefined && c.leader()!.id !== leader.id, 10_000))) {
      throw new Error('no failover');
    }
    this.say(`failover took ${((c.now - crashedAt) / 1000).toFixed(1)} s of simulated time`);

    const newLeader = c.leader()!.id;
    const follower = survivors.find((n) => n.id !== newLeader)!;
    // A follower forwards proposals once it has heard from the new leader.
    await this.runUntil(() => follower.raw!.raft.lead === newLeader, 5_000);
    this.say(`writing through follower node ${follower.id}: it forwards the proposal to the leader`);
    await this.write(follower.id, 'config/db=postgres://db-2', survivors);

    this.say(`restarting node ${leader.id} from its durable log`);
    c.restart(leader.id);
    const last = survivors[0]!.appliedIndex;
    if (!(await this.runUntil(() => all.every((n) => n.appliedIndex >= last), 10_000))) throw new Error('no catch-up');
    this.say(`node ${leader.id} caught up to index ${last}`);

    process.stdout.write('\nWhat each node applied, in order:\n');
    for (const node of all) process.stdout.write(`  node ${node.id}: ${node.applied.join(' | ')}\n`);
    const identical = all.every((n) => n.applied.join('\n') === all[0]!.applied.join('\n'));
    process.stdout.write(
      identical
        ? '\nAll three nodes applied the same commands in the same order.\n'
        : '\nERROR: the nodes applied different sequences.\n',
    );
    process.stdout.write(
      `\nNext: "npm test" runs the test suites; "npm run sim -- --seeds 1000" runs the fault simulator.\n`,
    );
    return identical ? 0 : 1;
  }
}
