/**
 * Quorum arithmetic for majority and joint configurations. Pure functions over sets of voter ids.
 */

export type VoteResult = 'pending' | 'lost' | 'won';

/** A set of voters where any majority decides. */
export type MajorityConfig = ReadonlySet<number>;

/** The incoming and the outgoing majority configuration; the outgoing one is empty unless joint. */
export type JointConfig = readonly [MajorityConfig, MajorityConfig];

/** Reports the highest index a voter is known to have in its log, or undefined if unknown. */
export type AckedIndexer = (voterId: number) => number | undefined;

const scratch: number[] = [];

/**
 * The largest index that a majority of `voters` have acknowledged. An empty configuration
 * returns +Infinity so that it never constrains a joint configuration.
 */
export function majorityCommittedIndex(voters: MajorityConfig, acked: AckedIndexer): number {
  const n = voters.size;
  if (n === 0) return Number.POSITIVE_INFINITY;
  scratch.length = 0;
  for (const id of voters) scratch.push(acked(id) ?? 0);
  // Insertion sort: configurations are small and this runs on every acknowledgement.
  for (let i = 1; i < n; i++) {
    const value = scratch[i]!;
    let j = i - 1;
    while (j >= 0 && scratch[j]! > value) {
      scratch[j + 1] = scratch[j]!;
      j--;
    }
    scratch[j + 1] = value;
  }
  // Ascending order: the element at n - (n/2 + 1) is acknowledged by a majority.
  return scratch[n - (Math.floor(n / 2) + 1)]!;
}

/** The outcome of an election given the votes cast so far (missing voters are pending). */
export function majorityVoteResult(
  voters: MajorityConfig,
  votes: ReadonlyMap<number, boolean>,
): VoteResult {
  if (voters.size === 0) return 'won'; // an empty configuration agrees with everything
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  const quorum = Math.floor(voters.size / 2) + 1;
  if (granted >= quorum) return 'won';
  if (granted + missing >= quorum) return 'pending';
  return 'lost';
}

export function jointCommittedIndex(config: JointConfig, acked: AckedIndexer): number {
  return Math.min(majorityCommittedIndex(config[0], acked), majorityCommittedIndex(config[1], acked));
}

/** Both halves of a joint configuration must agree for an election to be won. */
export function jointVoteResult(config: JointConfig, votes: ReadonlyMap<number, boolean>): VoteResult {
  const incoming = majorityVoteResult(config[0], votes);
  const outgoing = majorityVoteResult(config[1], votes);
  if (incoming === outgoing) return incoming;
  if (incoming === 'lost' || outgoing === 'lost') return 'lost';
  return 'pending';
}

/** Every voter of either half, ascending. */
export function jointVoterIds(config: JointConfig): number[] {
  const ids = new Set<number>(config[0]);
  for (const id of config[1]) ids.add(id);
  return [...ids].sort((a, b) => a - b);
}

export function sortedIds(set: ReadonlySet<number>): number[] {
  return [...set].sort((a, b) => a - b);
}
