/**
 * The placement loop (src/server/placement.ts): a dead member's replicas move to the least loaded
 * live voter while a majority of the shard's list is live; with every voter live, replicas move
 * from the most to the least loaded member until no two differ by more than one (a property over
 * random placements: it ends, in few moves, each move valid); nothing moves while a move is under
 * way; the loop counts a member dead only after its link has been down for the grace period, on
 * the meta shard's leader, and counts afresh after a leadership change.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ShardMap } from '../../src/cluster/index.js';
import { type LeaderTransfer, PlacementLoop, type PlacementMove, leaderBalancePasses, leaderTransferRestLooks, nextLeaderTransfer, nextPlacementMove, placedLoads } from '../../src/server/placement.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const none = (): boolean => false;
const all = (): boolean => true;

/** A store "s" whose shards (ids from 2) are placed on `lists`. */
function placed(lists: number[][]): ShardMap {
  return ShardMap.initial(1).mount('s', text('/s/'), lists.map((_, i) => i + 2), lists);
}

function applied(map: ShardMap, move: PlacementMove): ShardMap {
  const shard = map.shard(move.shard)!;
  return map.withReplicas(move.shard, [...shard.replicas.filter((id) => id !== move.from), move.to].sort((a, b) => a - b));
}

describe('nextPlacementMove', () => {
  it('moves a dead member\'s replica to the least loaded live voter not listed', () => {
    const map = placed([[1, 2, 3], [1, 2, 4]]);
    expect(nextPlacementMove(map, new Map(), [1, 2, 3, 4, 5], (id) => id === 3, (id) => id !== 3)).toEqual({ shard: 2, from: 3, to: 5, why: 're-replicate' });
    // 5 is dead too: the least loaded live voter not listed is 4.
    expect(nextPlacementMove(map, new Map(), [1, 2, 3, 4, 5], (id) => id === 3 || id === 5, (id) => id !== 3 && id !== 5)).toEqual({ shard: 2, from: 3, to: 4, why: 're-replicate' });
  });

  it('leaves a shard without a live majority alone, one moving already, and one that cannot move now', () => {
    expect(nextPlacementMove(placed([[1, 2]]), new Map(), [1, 2, 3], (id) => id === 2, (id) => id !== 2)).toBeUndefined();
    expect(nextPlacementMove(placed([[1]]), new Map(), [1, 2], (id) => id === 1, (id) => id !== 1)).toBeUndefined();
    expect(nextPlacementMove(placed([[1, 2, 3]]), new Map([[2, { from: 1, to: 4 }]]), [1, 2, 3, 4], (id) => id === 3, (id) => id !== 3)).toBeUndefined();
    expect(nextPlacementMove(placed([[1, 2, 3]]), new Map(), [1, 2, 3, 4], (id) => id === 3, (id) => id !== 3, new Set([2]))).toBeUndefined();
  });

  it('re-replicates other shards while a move is under way (up to a few at once); balances only with none', () => {
    const map = placed([[1, 2, 3], [1, 2, 3]]);
    // Shard 2's move cannot finish (its target is cut off but not dead): shard 3 still re-replicates.
    expect(nextPlacementMove(map, new Map([[2, { from: 3, to: 4 }]]), [1, 2, 3, 4, 5], (id) => id === 3, (id) => id !== 3)).toEqual({ shard: 3, from: 3, to: 5, why: 're-replicate' });
    expect(nextPlacementMove(placed([[1], [1], [1]]), new Map([[2, { from: 1, to: 3 }]]), [1, 2, 3], none, all)).toBeUndefined();
  });

  it('sends a move whose target died to another live member', () => {
    const map = placed([[1, 2, 3]]);
    expect(nextPlacementMove(map, new Map([[2, { from: 3, to: 4 }]]), [1, 2, 3, 4, 5], (id) => id === 3 || id === 4, (id) => id !== 3 && id !== 4)).toEqual({ shard: 2, from: 3, to: 5, why: 'redirect' });
    expect(nextPlacementMove(map, new Map([[2, { from: 3, to: 4 }]]), [1, 2, 3, 4], (id) => id === 4, (id) => id !== 4)).toBeUndefined();
  });

  it('balances only while every voter is live', () => {
    const map = placed([[1], [1], [1]]);
    expect(nextPlacementMove(map, new Map(), [1, 2], none, all)).toEqual({ shard: 2, from: 1, to: 2, why: 'balance' });
    expect(nextPlacementMove(map, new Map(), [1, 2], none, (id) => id !== 2)).toBeUndefined();
    expect(nextPlacementMove(placed([[1], [2]]), new Map(), [1, 2, 3], none, all)).toBeUndefined();
  });

  it('property: balance moves are valid and end, in few moves, with loads at most one apart', () => {
    const voterIds = fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { minLength: 2, maxLength: 6 });
    fc.assert(
      fc.property(voterIds, fc.array(fc.tuple(fc.integer({ min: 1, max: 3 }), fc.nat()), { minLength: 1, maxLength: 12 }), (voters, shards) => {
        // Each shard on R voters (R no more than the voters), some of them packed on the first ones.
        const lists = shards.map(([r, seed]) => {
          const count = Math.min(r, voters.length);
          const start = seed % voters.length;
          return Array.from({ length: count }, (_, i) => voters[(start + i) % voters.length]!).sort((a, b) => a - b);
        });
        let map = placed(lists);
        const moves = lists.reduce((sum, l) => sum + l.length, 0);
        for (let step = 0; ; step++) {
          const move = nextPlacementMove(map, new Map(), voters, none, all);
          if (move === undefined) break;
          expect(step).toBeLessThan(moves);
          const shard = map.shard(move.shard)!;
          expect(shard.replicas).toContain(move.from);
          expect(shard.replicas).not.toContain(move.to);
          expect(voters).toContain(move.to);
          map = applied(map, move);
        }
        const loads = [...placedLoads(map, voters).values()];
        expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
        // Every shard keeps its replica count.
        map.shards().filter((s) => s.replicas.length > 0).forEach((s, i) => expect(s.replicas).toHaveLength(lists[i]!.length));
      }),
      { numRuns: 300 },
    );
  });
});

/** A loop over a balanced placement of three shards on 1-4, member 1 leading all of them but one led by 2. */
function loopWithLeaders(rebalance: boolean) {
  const made = loop({ rebalance });
  made.state.map = placed([[1, 2, 3], [1, 2, 4], [1, 3, 4]]);
  made.state.connected = [2, 3, 4];
  made.state.leading = new Map([[1, [2, 3, 4]], [2, [1]], [3, []], [4, []]]);
  return made;
}

function loop(options: { rebalance?: boolean } = {}) {
    const state = {
      leads: true,
      nowMs: 0,
      map: placed([[1, 2, 3]]),
      connected: [2, 3, 4],
      moves: [] as PlacementMove[],
      logs: [] as string[],
      leading: new Map<number, number[]>() as Map<number, number[]> | undefined,
      transfers: [] as LeaderTransfer[],
    };
    const placement = new PlacementLoop({
      leadsMeta: () => state.leads,
      movesSupported: () => true,
      self: 1,
      map: () => state.map,
      moving: () => new Map(),
      unmovable: () => new Set(),
      voters: () => [1, 2, 3, 4],
      connected: () => state.connected,
      move: async (move) => {
        state.moves.push(move);
        state.map = applied(state.map, move);
      },
      deadAfterMs: 5000,
      rebalance: options.rebalance ?? true,
      leading: async () => state.leading,
      transferLeader: async (transfer) => {
        state.transfers.push(transfer);
        const from = state.leading!.get(transfer.from)!.filter((id) => id !== transfer.shard);
        state.leading!.set(transfer.from, from);
        state.leading!.set(transfer.to, [...(state.leading!.get(transfer.to) ?? []), transfer.shard]);
      },
      now: () => state.nowMs,
      log: { info: (m) => state.logs.push(m), warn: (m) => state.logs.push(`warn: ${m}`) },
    });
    return { state, placement };
}

describe('PlacementLoop', () => {
  it('counts a member dead only once its link has been down for the grace period, then moves its replica', async () => {
    const { state, placement } = loop();
    state.connected = [2, 4];
    await placement.tick();
    state.nowMs = 4999;
    await placement.tick();
    expect(state.moves).toEqual([]);
    // Back for a moment: counted afresh.
    state.connected = [2, 3, 4];
    await placement.tick();
    state.connected = [2, 4];
    state.nowMs = 6000;
    await placement.tick();
    state.nowMs = 10_999;
    await placement.tick();
    expect(state.moves).toEqual([]);
    state.nowMs = 11_000;
    await placement.tick();
    expect(state.moves).toEqual([{ shard: 2, from: 3, to: 4, why: 're-replicate' }]);
    expect(state.logs[0]).toMatch(/member 3 has been unreachable for 5 s; moving shard 2's replica to 4/);
  });

  it('acts only on the meta shard\'s leader, which counts afresh when it leads again', async () => {
    const { state, placement } = loop();
    state.connected = [2, 4];
    await placement.tick();
    state.leads = false;
    state.nowMs = 6000;
    await placement.tick();
    expect(state.moves).toEqual([]);
    state.leads = true;
    await placement.tick();
    state.nowMs = 10_999;
    await placement.tick();
    expect(state.moves).toEqual([]);
    state.nowMs = 11_000;
    await placement.tick();
    expect(state.moves).toHaveLength(1);
  });

  it('balances unless told not to', async () => {
    const packed = loop();
    packed.state.map = placed([[1], [1], [1]]);
    await packed.placement.tick();
    expect(packed.state.moves).toEqual([{ shard: 2, from: 1, to: 2, why: 'balance' }]);
    const still = loop({ rebalance: false });
    still.state.map = placed([[1], [1], [1]]);
    await still.placement.tick();
    expect(still.state.moves).toEqual([]);
  });
});

describe('nextLeaderTransfer', () => {
  /** A store "s" of `n` shards (ids from 2) every member hosts, and the default store's shard 1. */
  const everywhere = (n: number): ShardMap => ShardMap.initial(1).mount('s', text('/s/'), Array.from({ length: n }, (_, i) => i + 2), Array.from({ length: n }, () => []));

  it('hands a leadership from the member leading the most to the voter of it leading the fewest', () => {
    const map = everywhere(4);
    expect(nextLeaderTransfer(map, [1, 2, 3], new Map([[1, [1, 2, 3, 4]], [2, [5]]]))).toEqual({ shard: 2, from: 1, to: 3 });
    // Two apart or more only.
    expect(nextLeaderTransfer(map, [1, 2, 3], new Map([[1, [2, 3]], [2, [4]], [3, [5]]]))).toBeUndefined();
    expect(nextLeaderTransfer(map, [1, 2, 3], new Map([[1, [2, 3]], [2, [4, 5]], [3, [1]]]))).toBeUndefined();
  });

  it('counts only the shards of the map', () => {
    // 90 and 91 (a dropped store's groups not removed yet) do not make member 1 lead more.
    expect(nextLeaderTransfer(everywhere(2), [1, 2], new Map([[1, [2, 90, 91]], [2, []]]))).toBeUndefined();
  });

  it('never hands over the default store\'s shard or a shard that cannot move now, and only to a replica', () => {
    expect(nextLeaderTransfer(everywhere(1), [1, 2, 3], new Map([[1, [1, 2]]]), new Set([2]))).toBeUndefined();
    expect(nextLeaderTransfer(everywhere(1), [1, 2, 3], new Map([[1, [1, 2]]]))).toEqual({ shard: 2, from: 1, to: 2 });
    // Shard 2 lives on 1 and 2 only: its leadership can go to 2, never to 3.
    expect(nextLeaderTransfer(placed([[1, 2], [1, 3]]), [1, 2, 3], new Map([[1, [2, 3]], [2, [1]]]))).toEqual({ shard: 3, from: 1, to: 3 });
    expect(nextLeaderTransfer(placed([[1, 2]]), [1, 2, 3], new Map([[1, [2]], [2, [1]]]))).toBeUndefined();
  });

  it('ends, with every hand-over valid and each member leading within one of the others, when every member hosts every shard', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 24 }), fc.array(fc.nat(), { minLength: 25, maxLength: 25 }), (members, shards, draws) => {
        const voters = Array.from({ length: members }, (_, i) => i + 1);
        const map = everywhere(shards);
        const leading = new Map<number, number[]>(voters.map((id) => [id, []]));
        for (let s = 0; s < shards; s++) leading.get(voters[draws[s]! % members]!)!.push(s + 2);
        let steps = 0;
        for (;;) {
          const transfer = nextLeaderTransfer(map, voters, leading);
          if (transfer === undefined) break;
          expect(leading.get(transfer.from)).toContain(transfer.shard);
          expect(transfer.to).not.toBe(transfer.from);
          expect(leading.get(transfer.from)!.length - leading.get(transfer.to)!.length).toBeGreaterThanOrEqual(2);
          leading.set(transfer.from, leading.get(transfer.from)!.filter((id) => id !== transfer.shard));
          leading.get(transfer.to)!.push(transfer.shard);
          steps++;
          expect(steps).toBeLessThanOrEqual(shards);
        }
        const counts = voters.map((id) => leading.get(id)!.length);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });
});

describe('PlacementLoop leaderships', () => {
  it('lets a shard whose hand-over did not happen rest a few looks before asking again', async () => {
    const { state, placement } = loopWithLeaders(true);
    state.leading = new Map([[1, [2, 3, 4]], [2, []], [3, []], [4, []]]);
    const asked: number[] = [];
    // Hand-overs that never happen (the leading stays as it was).
    const stuck = new PlacementLoop({ ...(placement as unknown as { host: ConstructorParameters<typeof PlacementLoop>[0] }).host, transferLeader: async (t) => void asked.push(t.shard) });
    for (let look = 1; look <= leaderTransferRestLooks + 1; look++) for (let i = 0; i < leaderBalancePasses; i++) await stuck.tick();
    expect(asked).toEqual([2, 3, 4, 2]);
    expect(state.transfers).toEqual([]);
  });

  it('hands one leadership over every few looks while replicas are balanced, unless told not to', async () => {
    for (const rebalance of [true, false]) {
      const { state, placement } = loopWithLeaders(rebalance);
      for (let i = 0; i < leaderBalancePasses - 1; i++) await placement.tick();
      expect(state.transfers).toEqual([]);
      await placement.tick();
      if (!rebalance) {
        expect(state.transfers).toEqual([]);
        continue;
      }
      expect(state.transfers).toEqual([{ shard: 2, from: 1, to: 3 }]);
      expect(state.logs.some((l) => /handing shard 2's leadership from 1 \(leads 3 shards\) to 3 \(leads 0\)/.test(l))).toBe(true);
      // One per look: the next one a few looks later, then none (each member leads one).
      for (let i = 0; i < 3 * leaderBalancePasses; i++) await placement.tick();
      expect(state.transfers).toEqual([{ shard: 2, from: 1, to: 3 }, { shard: 3, from: 1, to: 4 }]);
      // A voter that does not answer: no balancing.
      state.leading = undefined;
      for (let i = 0; i < 2 * leaderBalancePasses; i++) await placement.tick();
      expect(state.transfers).toHaveLength(2);
    }
  });
});
