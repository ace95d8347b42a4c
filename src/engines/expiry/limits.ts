/**
 * Limits of the expiration engine's time wheel (units last). The relations between them are
 * asserted when this module loads.
 */
import { assert } from '../../../raft/index.js';

/**
 * The base of the wheel's digits: a level-L slot spans wheelSlotsPerLevel^L ticks. Each level is
 * a ring of twice this many slots — the cursor's block of the level above and the next one — so
 * the next block's timers can be cascaded down ahead of time, a bounded number per call, instead
 * of all at once when the cursor reaches them. Each ring keeps an occupancy bitmap of 32-bit
 * words, so finding the next occupied slot is a few bit operations, never a walk over empty slots.
 */
export const wheelSlotsPerLevel = 64;

/**
 * Levels of the wheel. Deadlines beyond the top level's next turn (a turn is 64^6 ticks: 795
 * days at 1 ms resolution, 218 years at 100 ms) wait in an overflow list that is sorted into the
 * wheel once per turn.
 */
export const wheelLevels = 6;

/**
 * Slots one `advance` call empties or cascades (each is O(1) bookkeeping plus, for a cascade, the
 * timers it moves, counted below). Empty stretches are skipped without being visited, so this
 * bounds only occupied slots: a wheel an hour behind catches up in a few calls.
 */
export const wheelSlotsPerAdvanceMax = 1024;

/**
 * Timers one `advance` call moves: cascaded from a higher-level slot to a lower one, or sorted
 * out of the overflow list. A slot holding more is finished on the next calls; only a cursor far
 * behind ever has to wait for one (the cascade is otherwise done a whole slot ahead of time).
 */
export const wheelTimersMovedPerAdvanceMax = 8_192;

/**
 * Due timers one `advance` call may be asked to return (its `budget`). Each becomes a command to
 * propose (a lease revoke, a key delete), so this stays well below the runtime's pending writes.
 */
export const wheelTimersDuePerAdvanceMax = 4_096;

assert(wheelSlotsPerLevel === 64, 'the occupancy bitmap of a ring (128 slots) is four 32-bit words');
assert(wheelLevels >= 2, 'a wheel of one level is a plain ring: make the ring bigger instead');
assert(
  Number.isSafeInteger(wheelSlotsPerLevel ** (wheelLevels + 1)),
  'tick arithmetic over the whole wheel (and one turn past it) must stay exact in a double',
);
assert(wheelSlotsPerAdvanceMax >= wheelLevels + 1, "one tick's slots (one per level, plus the overflow) must fit one call");
assert(wheelTimersMovedPerAdvanceMax >= 1, 'a cascade must make progress on every call');
assert(wheelTimersDuePerAdvanceMax >= 1, 'an advance must be able to return a due timer');
assert(
  wheelTimersMovedPerAdvanceMax >= wheelTimersDuePerAdvanceMax,
  'cascades must be able to feed a full budget of due timers per call, or a steady load falls behind',
);
