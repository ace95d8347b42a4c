import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ConfChange,
  type ConfChangeSingle,
  type ConfState,
  applyConfChangeTo,
  enterJoint,
  leaveJoint,
  restoreConfig,
  simpleChange,
} from '../../../raft/index.js';
import type { ChangeResult, ChangerInput } from '../../../raft/confchange.js';
import type { Progress } from '../../../raft/progress.js';
import { EMPTY_TRACKER_CONFIG, type TrackerConfig, confStateOf, describeConfig } from '../../../raft/tracker.js';

const LAST_INDEX = 10;
const OPTIONS = { lastIndex: LAST_INDEX, inflightMessagesMax: 8, inflightBytesMax: 0 };

const emptyInput: ChangerInput = { config: EMPTY_TRACKER_CONFIG, progress: new Map(), ...OPTIONS };

const v = (nodeId: number): ConfChangeSingle => ({ type: 'add-voter', nodeId });
const l = (nodeId: number): ConfChangeSingle => ({ type: 'add-learner', nodeId });
const r = (nodeId: number): ConfChangeSingle => ({ type: 'remove', nodeId });
const u = (nodeId: number): ConfChangeSingle => ({ type: 'update', nodeId });

function ok(result: ChangeResult): ChangerInput {
  if (!result.ok) throw new Error(`expected success, got: ${result.error}`);
  return { ...OPTIONS, config: result.config, progress: result.progress };
}

function error(result: ChangeResult): string {
  if (result.ok) throw new Error(`expected an error, got ${describeConfig(result.config)}`);
  return result.error;
}

/** Builds a configuration by adding members one simple change at a time. */
function start(voters: readonly number[], learners: readonly number[] = []): ChangerInput {
  let input = emptyInput;
  for (const id of voters) input = ok(simpleChange(input, [v(id)]));
  for (const id of learners) input = ok(simpleChange(input, [l(id)]));
  return input;
}

/** The configuration in the text form of etcd's datadriven tests, plus each progress' learner flag. */
function show(input: ChangerInput): string {
  const flags = [...input.progress.entries()]
    .sort(([a], [b]) => a - b)
    .map(([id, pr]) => `${id}${pr.isLearner ? 'L' : ''}`)
    .join(' ');
  return `${describeConfig(input.config)} | progress ${flags}`;
}

/** A deep, comparable picture of an input, to check that nothing was mutated. */
function picture(input: ChangerInput): unknown {
  const config = input.config;
  return {
    config: confStateOf(config),
    progress: [...input.progress.entries()].map(([id, pr]: [number, Progress]) => [
      id,
      pr.match,
      pr.next,
      pr.state,
      pr.isLearner,
      pr.recentActive,
      pr.inflights.count,
    ]),
  };
}

describe('simpleChange', () => {
  it('adds the first voter to an empty configuration with a fresh progress', () => {
    const input = ok(simpleChange(emptyInput, [v(1)]));
    expect(show(input)).toBe('voters=(1) | progress 1');
    const pr = input.progress.get(1)!;
    expect([pr.match, pr.next, pr.state, pr.isLearner, pr.recentActive]).toEqual([0, LAST_INDEX, 'probe', false, true]);
  });

  it('starts new progress at next = 1 on an empty log', () => {
    const input = ok(simpleChange({ ...emptyInput, lastIndex: 0 }, [v(1)]));
    expect(input.progress.get(1)!.next).toBe(1);
  });

  it('adds and removes voters and learners one at a time', () => {
    let input = start([1, 2, 3]);
    expect(show(input)).toBe('voters=(1 2 3) | progress 1 2 3');
    input = ok(simpleChange(input, [l(4)]));
    expect(show(input)).toBe('voters=(1 2 3) learners=(4) | progress 1 2 3 4L');
    input = ok(simpleChange(input, [r(2)]));
    expect(show(input)).toBe('voters=(1 3) learners=(4) | progress 1 3 4L');
    input = ok(simpleChange(input, [r(4)]));
    expect(show(input)).toBe('voters=(1 3) | progress 1 3');
  });

  it('promotes a learner, keeping its progress', () => {
    let input = start([1], [2]);
    input.progress.get(2)!.maybeUpdate(7);
    input = ok(simpleChange(input, [v(2)]));
    expect(show(input)).toBe('voters=(1 2) | progress 1 2');
    expect(input.progress.get(2)!.match).toBe(7);
  });

  it('demotes a voter to a learner, keeping its progress', () => {
    let input = start([1, 2]);
    input.progress.get(2)!.maybeUpdate(4);
    input = ok(simpleChange(input, [l(2)]));
    expect(show(input)).toBe('voters=(1) learners=(2) | progress 1 2L');
    expect(input.progress.get(2)!.match).toBe(4);
  });

  it('treats re-adding a member, removing a stranger and updates as no-ops', () => {
    const input = start([1, 2], [3]);
    expect(show(ok(simpleChange(input, [v(1)])))).toBe(show(input));
    expect(show(ok(simpleChange(input, [l(3)])))).toBe(show(input));
    expect(show(ok(simpleChange(input, [r(9)])))).toBe(show(input));
    expect(show(ok(simpleChange(input, [u(1)])))).toBe(show(input));
  });

  it('allows several learner changes alongside one voter change', () => {
    const input = ok(simpleChange(start([1, 2]), [l(3), l(4), v(5), r(9)]));
    expect(show(input)).toBe('voters=(1 2 5) learners=(3 4) | progress 1 2 3L 4L 5');
  });

  it('refuses to change more than one voter', () => {
    const input = start([1, 2, 3]);
    expect(error(simpleChange(input, [v(4), v(5)]))).toBe('more than one voter changed without entering joint config');
    expect(error(simpleChange(input, [r(1), r(2)]))).toBe('more than one voter changed without entering joint config');
    // Swapping one voter for another changes two.
    expect(error(simpleChange(input, [r(1), v(4)]))).toBe('more than one voter changed without entering joint config');
    // Demoting a voter and promoting a learner changes two.
    expect(error(simpleChange(start([1, 2], [3]), [l(1), v(3)]))).toBe(
      'more than one voter changed without entering joint config',
    );
  });

  it('refuses to remove the last voter, or to add only a learner to an empty config', () => {
    expect(error(simpleChange(start([1]), [r(1)]))).toBe('removed all voters');
    expect(error(simpleChange(start([1]), [l(1)]))).toBe('removed all voters');
    expect(error(simpleChange(emptyInput, [l(1)]))).toBe('removed all voters');
  });

  it('refuses invalid node ids', () => {
    for (const id of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(error(simpleChange(start([1]), [v(id)]))).toBe(`invalid node id ${id}`);
    }
    expect(error(simpleChange(start([1]), [r(0)]))).toBe('invalid node id 0');
  });

  it('refuses to run in a joint configuration', () => {
    const joint = ok(enterJoint(start([1, 2]), false, [v(3)]));
    expect(error(simpleChange(joint, [v(4)]))).toBe("can't apply simple config change in joint config");
  });
});

describe('enterJoint and leaveJoint', () => {
  it('enters a joint configuration with the old voters outgoing, and leaves it', () => {
    const base = start([1, 2, 3]);
    const joint = ok(enterJoint(base, true, [r(1), v(4), v(5)]));
    expect(show(joint)).toBe('voters=(2 3 4 5)&&(1 2 3) autoleave | progress 1 2 3 4 5');
    const left = ok(leaveJoint(joint));
    // The outgoing-only voter 1 loses its progress when the joint state is left.
    expect(show(left)).toBe('voters=(2 3 4 5) | progress 2 3 4 5');
    expect(left.config.autoLeave).toBe(false);
  });

  it('records autoLeave as asked', () => {
    expect(ok(enterJoint(start([1]), false, [v(2)])).config.autoLeave).toBe(false);
    expect(ok(enterJoint(start([1]), true, [v(2)])).config.autoLeave).toBe(true);
  });

  it('may enter with no changes (both halves equal)', () => {
    const joint = ok(enterJoint(start([1, 2]), false, []));
    expect(show(joint)).toBe('voters=(1 2)&&(1 2) | progress 1 2');
    expect(show(ok(leaveJoint(joint)))).toBe('voters=(1 2) | progress 1 2');
  });

  it('demotes a voter through learnersNext', () => {
    const joint = ok(enterJoint(start([1, 2, 3]), false, [l(3)]));
    expect(show(joint)).toBe('voters=(1 2)&&(1 2 3) learners_next=(3) | progress 1 2 3');
    // Still a voter of the outgoing half, so not yet marked as a learner.
    expect(joint.progress.get(3)!.isLearner).toBe(false);
    expect(joint.config.learners.size).toBe(0);
    const left = ok(leaveJoint(joint));
    expect(show(left)).toBe('voters=(1 2) learners=(3) | progress 1 2 3L');
  });

  it('adds a brand-new learner straight to learners', () => {
    const joint = ok(enterJoint(start([1, 2]), false, [l(4), v(3)]));
    expect(show(joint)).toBe('voters=(1 2 3)&&(1 2) learners=(4) | progress 1 2 3 4L');
  });

  it('promoting a learner-to-be again cancels the demotion', () => {
    const joint = ok(enterJoint(start([1, 2, 3]), false, [l(3), v(3)]));
    expect(show(joint)).toBe('voters=(1 2 3)&&(1 2 3) | progress 1 2 3');
  });

  it('keeps the progress of an outgoing voter removed from the incoming half', () => {
    const base = start([1, 2, 3]);
    base.progress.get(3)!.maybeUpdate(6);
    const joint = ok(enterJoint(base, false, [r(3)]));
    expect(joint.progress.get(3)!.match).toBe(6);
    expect(show(joint)).toBe('voters=(1 2)&&(1 2 3) | progress 1 2 3');
  });

  it('removes a learner in a joint change', () => {
    const joint = ok(enterJoint(start([1, 2], [3]), false, [r(3), v(4)]));
    expect(show(joint)).toBe('voters=(1 2 4)&&(1 2) | progress 1 2 4');
  });

  it('refuses to enter when already joint', () => {
    const joint = ok(enterJoint(start([1, 2]), false, [v(3)]));
    expect(error(enterJoint(joint, false, [v(4)]))).toBe('config is already joint');
  });

  it('refuses to make a zero-voter configuration joint', () => {
    expect(error(enterJoint(emptyInput, false, [v(1)]))).toBe("can't make a zero-voter config joint");
  });

  it('refuses to remove every incoming voter', () => {
    expect(error(enterJoint(start([1, 2]), false, [r(1), r(2)]))).toBe('removed all voters');
  });

  it('refuses invalid node ids', () => {
    expect(error(enterJoint(start([1, 2]), false, [v(3), v(0)]))).toBe('invalid node id 0');
  });

  it('refuses to leave a configuration that is not joint', () => {
    expect(error(leaveJoint(start([1, 2])))).toBe("can't leave a non-joint config");
    expect(error(leaveJoint(emptyInput))).toBe("can't leave a non-joint config");
  });
});

describe('applyConfChangeTo', () => {
  const cc = (transition: ConfChange['transition'], changes: ConfChangeSingle[]): ConfChange => ({
    transition,
    changes,
    context: new Uint8Array(0),
  });

  it('applies a single auto change simply', () => {
    expect(show(ok(applyConfChangeTo(start([1]), cc('auto', [v(2)]))))).toBe('voters=(1 2) | progress 1 2');
  });

  it('enters an auto-leaving joint configuration for several auto changes', () => {
    expect(show(ok(applyConfChangeTo(start([1]), cc('auto', [v(2), v(3)]))))).toBe(
      'voters=(1 2 3)&&(1) autoleave | progress 1 2 3',
    );
  });

  it('always enters joint for the explicit transitions', () => {
    expect(show(ok(applyConfChangeTo(start([1]), cc('joint-implicit', [v(2)]))))).toBe(
      'voters=(1 2)&&(1) autoleave | progress 1 2',
    );
    expect(show(ok(applyConfChangeTo(start([1]), cc('joint-explicit', [v(2)]))))).toBe(
      'voters=(1 2)&&(1) | progress 1 2',
    );
  });

  it('leaves the joint configuration on an empty auto change', () => {
    const joint = ok(applyConfChangeTo(start([1]), cc('joint-explicit', [v(2)])));
    expect(show(ok(applyConfChangeTo(joint, cc('auto', []))))).toBe('voters=(1 2) | progress 1 2');
  });
});

describe('inputs are never mutated', () => {
  const cases: Array<[string, () => ChangerInput, (input: ChangerInput) => ChangeResult]> = [
    ['simple add', () => start([1, 2], [3]), (i) => simpleChange(i, [v(4)])],
    ['simple promote', () => start([1, 2], [3]), (i) => simpleChange(i, [v(3)])],
    ['simple demote', () => start([1, 2], [3]), (i) => simpleChange(i, [l(2)])],
    ['simple remove', () => start([1, 2], [3]), (i) => simpleChange(i, [r(2), r(3)])],
    ['simple refused', () => start([1, 2], [3]), (i) => simpleChange(i, [r(1), r(2)])],
    ['enter joint', () => start([1, 2, 3], [4]), (i) => enterJoint(i, true, [l(3), v(4), r(1), v(5)])],
    ['enter refused', () => start([1, 2]), (i) => enterJoint(i, false, [r(1), r(2)])],
    ['leave joint', () => ok(enterJoint(start([1, 2, 3]), false, [l(3), r(2)])), (i) => leaveJoint(i)],
  ];

  it.each(cases)('%s', (_name, make, change) => {
    const input = make();
    const before = picture(input);
    const result = change(input);
    expect(picture(input)).toEqual(before);
    if (result.ok) {
      // The result owns fresh progress objects: changing them leaves the input alone.
      for (const [id, pr] of result.progress) {
        expect(pr).not.toBe(input.progress.get(id));
        pr.maybeUpdate(pr.next + 5);
        pr.isLearner = !pr.isLearner;
      }
      expect(result.config.voters[0]).not.toBe(input.config.voters[0]);
      expect(picture(input)).toEqual(before);
    }
  });
});

describe('restoreConfig', () => {
  function restored(cs: ConfState): ChangerInput {
    return ok(restoreConfig(cs, OPTIONS));
  }

  it('restores an empty ConfState to an empty configuration', () => {
    const input = restored({ voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
    expect(confStateOf(input.config)).toEqual(confStateOf(EMPTY_TRACKER_CONFIG));
    expect(input.progress.size).toBe(0);
  });

  it('restores a simple configuration with learners', () => {
    const input = restored({ voters: [3, 1, 2], votersOutgoing: [], learners: [5, 4], learnersNext: [], autoLeave: false });
    expect(show(input)).toBe('voters=(1 2 3) learners=(4 5) | progress 1 2 3 4L 5L');
  });

  it('restores a joint configuration with learners-to-be', () => {
    const cs: ConfState = { voters: [1, 2, 4], votersOutgoing: [1, 2, 3], learners: [5], learnersNext: [3], autoLeave: true };
    const input = restored(cs);
    expect(show(input)).toBe('voters=(1 2 4)&&(1 2 3) learners=(5) learners_next=(3) autoleave | progress 1 2 3 4 5L');
    expect(confStateOf(input.config)).toEqual(cs);
  });

  it('refuses an inconsistent ConfState', () => {
    const base = { votersOutgoing: [], learnersNext: [], autoLeave: false };
    expect(restoreConfig({ ...base, voters: [], learners: [1] }, OPTIONS).ok).toBe(false);
    expect(restoreConfig({ ...base, voters: [1], learners: [1] }, OPTIONS).ok).toBe(false);
    expect(restoreConfig({ ...base, voters: [0, 1], learners: [] }, OPTIONS).ok).toBe(false);
    expect(
      restoreConfig({ voters: [], votersOutgoing: [1], learners: [], learnersNext: [], autoLeave: false }, OPTIONS).ok,
    ).toBe(false);
  });

  it('drops autoLeave from a ConfState that is not joint, as etcd does', () => {
    const input = restored({ voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: true });
    expect(show(input)).toBe('voters=(1) | progress 1');
    expect(input.config.autoLeave).toBe(false);
  });

  /** Valid ConfStates: each id 1..8 takes one role. */
  const validConfState: fc.Arbitrary<ConfState> = fc
    .record({
      joint: fc.boolean(),
      autoLeave: fc.boolean(),
      // 0 none, 1 incoming voter, 2 outgoing voter, 3 both, 4 learner, 5 learner-to-be (outgoing)
      roles: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 8, maxLength: 8 }),
      order: fc.array(fc.nat(), { minLength: 8, maxLength: 8 }),
    })
    .map(({ joint, autoLeave, roles, order }): ConfState | undefined => {
      const pick = (...wanted: number[]): number[] =>
        roles
          .map((role, i) => ({ role: joint ? role : [0, 1, 1, 1, 4, 4][role]!, id: i + 1, key: order[i]! }))
          .filter((x) => wanted.includes(x.role))
          .sort((a, b) => a.key - b.key) // any order: restoreConfig must not depend on it
          .map((x) => x.id);
      const cs: ConfState = {
        voters: pick(1, 3),
        votersOutgoing: joint ? pick(2, 3, 5) : [],
        learners: pick(4),
        learnersNext: joint ? pick(5) : [],
        autoLeave: joint && autoLeave,
      };
      if (cs.voters.length === 0 && (cs.learners.length > 0 || cs.votersOutgoing.length > 0)) return undefined;
      if (joint && cs.votersOutgoing.length === 0) return undefined;
      return cs;
    })
    .filter((cs): cs is ConfState => cs !== undefined);

  const sorted = (ids: readonly number[]): number[] => [...ids].sort((a, b) => a - b);

  it('gives back an equal ConfState for any valid one (property)', () => {
    fc.assert(
      fc.property(validConfState, (cs) => {
        const frozen = JSON.stringify(cs);
        const input = restored(cs);
        expect(JSON.stringify(cs)).toBe(frozen);
        expect(confStateOf(input.config)).toEqual({
          voters: sorted(cs.voters),
          votersOutgoing: sorted(cs.votersOutgoing),
          learners: sorted(cs.learners),
          learnersNext: sorted(cs.learnersNext),
          autoLeave: cs.autoLeave,
        });
        // Exactly the members have progress; only the learners are marked as learners.
        const members = new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners]);
        expect(sorted([...input.progress.keys()])).toEqual(sorted([...members]));
        for (const [id, pr] of input.progress) {
          expect(pr.isLearner).toBe(cs.learners.includes(id));
          expect([pr.match, pr.next]).toEqual([0, LAST_INDEX]);
        }
        // Leaving the restored joint state gives what the ConfState promises.
        if (cs.votersOutgoing.length > 0) {
          const left = confStateOf(ok(leaveJoint(input)).config);
          expect(left.voters).toEqual(sorted(cs.voters));
          expect(left.learners).toEqual(sorted([...cs.learners, ...cs.learnersNext]));
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('confStateOf', () => {
  it('lists every set in ascending order', () => {
    const config: TrackerConfig = {
      voters: [new Set([3, 1]), new Set([2, 1])],
      autoLeave: true,
      learners: new Set([9, 7]),
      learnersNext: new Set([2]),
    };
    expect(confStateOf(config)).toEqual({
      voters: [1, 3],
      votersOutgoing: [1, 2],
      learners: [7, 9],
      learnersNext: [2],
      autoLeave: true,
    });
  });
});
