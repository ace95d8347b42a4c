/**
 * Limits of the expiration engine's time wheel (units last). The relations between them are
 * asserted when this module loads.
 */
import { assert } from '../../../raft/index';

/**
 * Slots of one level of the wheel. Each level keeps an occupancy bitmap of two 32-bit words, so
 * finding the next occupied slot is a few bit operations, never a walk over empty slots.
 */
export const wheelSlotsPerLevel = 64;

/**
 * Levels of the wheel. A level-L slot covers wheelSlotsPerLevel^L ticks; deadlines beyond the
 * top level (64^6 ticks: 795 days at 1 ms resolution, 218 years at 100 ms) wait in an overflow
 * list that is sorted into the wheel once per turn of the top level.
 */
export const wheelLevels = 6;

/**
 * Slots one `advance` call empties or cascades (each is O(1) bookkeeping plus, for a cascade, the
 * timers it moves, counted below). Empty stretches are skipped without being visited, so this
 * bounds only occupied slots: a wheel an hour behind catches up in a few calls.
 */
export const wheelSlotsPerAdvanceMax = 1024;

/**
 * Timers one `advance` call moves: cascaded from a higher-level slot to a lower one (or to the
 * due list), or sorted out of the overflow list. A slot holding more is finished on the next call.
 */
export const wheelTimersMovedPerAdvanceMax = 16_384;

/** Due timers one `advance` call may be asked to return (its `budget`). */
export const wheelTimersDuePerAdvanceMax = 16_384;

assert(wheelSlotsPerLevel === 64, 'the occupancy bitmap of a level is two 32-bit words');
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
