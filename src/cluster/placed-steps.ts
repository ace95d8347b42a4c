/**
 * The next step a placed shard's group takes toward its replica list (src/server/membership-sync.ts
 * carries it out on the group's leader; jepsen-lite's simulator mirrors it): pure, over the
 * group's configuration and the list, so both run the same rules.
 */

/** A group's configuration, as much of it as the step reads (Raft's ConfState has these lists). */
export interface GroupConfigView {
  readonly voters: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
}

/** One configuration change (Raft's ConfChangeSingle, of the kinds a step makes). */
export interface GroupChange {
  readonly type: 'add-voter' | 'add-learner' | 'remove';
  readonly nodeId: number;
}

/** What to do next to a placed shard's group: a configuration change, or a leadership transfer. */
export type PlacedStep = { readonly change: GroupChange } | { readonly transferTo: number };

/**
 * The next step that brings a placed shard's group (`config`, led by `self`) to its replica list
 * `replicas` (the listed members that are members of the cluster; src/server/membership-sync.ts):
 * removed ids leave first; then a listed member the group lacks is added as a learner; then a
 * listed learner is promoted once `caughtUp` says so (nothing else happens while one catches up);
 * then, every listed member voting, an id the list does not name is removed while the voters left
 * hold a majority `inSync` (this node counted), the leader itself last and never by itself: it
 * hands leadership to the first listed voter `inSync`.
 */
export function nextPlacedChange(
  replicas: readonly number[],
  isRemoved: (id: number) => boolean,
  config: GroupConfigView,
  self: number,
  caughtUp: (id: number) => boolean,
  inSync: (id: number) => boolean = caughtUp,
): PlacedStep | undefined {
  if (config.votersOutgoing.length > 0) return undefined;
  const voters = new Set(config.voters);
  const learners = new Set(config.learners);
  const members = [...learners, ...voters].sort((a, b) => a - b);
  for (const id of members) {
    if (isRemoved(id) && !(voters.has(id) && voters.size === 1)) return { change: { type: 'remove', nodeId: id } };
  }
  const listed = [...replicas].filter((id) => !isRemoved(id)).sort((a, b) => a - b);
  for (const id of listed) if (!voters.has(id) && !learners.has(id)) return { change: { type: 'add-learner', nodeId: id } };
  for (const id of listed) {
    if (!learners.has(id)) continue;
    return caughtUp(id) ? { change: { type: 'add-voter', nodeId: id } } : undefined;
  }
  const listedSet = new Set(listed);
  for (const id of members) {
    if (listedSet.has(id) || id === self) continue;
    // Only while the voters left hold a majority in sync (this node among them): a new member
    // that stopped right after its promotion must not leave the group without a quorum.
    const left = config.voters.filter((v) => v !== id);
    return 2 * left.filter((v) => v === self || inSync(v)).length > left.length ? { change: { type: 'remove', nodeId: id } } : undefined;
  }
  if (!listedSet.has(self) && voters.has(self)) {
    const to = listed.find((id) => voters.has(id) && inSync(id));
    return to === undefined ? undefined : { transferTo: to };
  }
  return undefined;
}

