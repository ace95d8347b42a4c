/**
 * `dkv jepsen`: partition tests run locally. `sim` plays the real Raft core and state machine on a
 * simulated network, disk and clock from one seed; `run` starts a real local cluster (DKV or etcd),
 * injects faults through TCP proxies and signals, and checks what concurrent clients saw.
 */

export const jepsenHelp = `Usage: dkv jepsen <mode> [options]

Partition tests anyone can run locally. Both modes record every client operation, check the
history for linearizability (kv histories decided from their revisions), the transactional
workloads (append, rw-register) for Elle's anomalies, and the watch workload's streams for etcd's
watch guarantees, and write a report folder: history.json, results.json and index.html (it opens
on the violation, when there is one). Exit status: 0 ok, 1 violation, 2 unknown or usage error.

Modes:
  sim    the real Raft core and KV state machine on a simulated network, disk and clock, all from
         one seed; a failing seed prints the command that replays it exactly
  run    a real local cluster (DKV, or etcd with --target etcd) with faults injected through TCP
         proxies on the peer links and SIGKILL/SIGSTOP; only loopback addresses are used

"dkv jepsen <mode> --help" lists a mode's options.
`;

export async function jepsenCommand(args: string[]): Promise<number> {
  const [mode, ...rest] = args;
  switch (mode) {
    case 'sim': {
      const { jepsenSimCommand } = await import('../../jepsen-lite/sim/jepsen/command.js');
      return jepsenSimCommand(rest);
    }
    case 'run': {
      const { jepsenRunCommand } = await import('../../jepsen-lite/real/command.js');
      return jepsenRunCommand(rest);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      // A missing subcommand is a usage error: usage on stderr, exit 2; asked-for help goes to stdout.
      ((mode === undefined) ? process.stderr : process.stdout).write(jepsenHelp);
      return mode === undefined ? 2 : 0;
    default:
      process.stderr.write(`dkv jepsen: unknown mode "${mode}"\n\n${jepsenHelp}`);
      return 2;
  }
}
