/**
 * Configuration changes as pure functions: each takes the current configuration and progress and
 * returns new ones (the inputs are never mutated), or an error saying why the change is invalid.
 */
import { Inflights } from './inflights.js';
import { Progress } from './progress.js';
import type { ProgressMap, TrackerConfig } from './tracker.js';
import { EMPTY_TRACKER_CONFIG, isJoint } from './tracker.js';
import type { ConfChangeSingle, ConfState } from './types.js';
import { entersJoint, isLeaveJoint, type ConfChange } from './types.js';

export interface ChangerInput {
  readonly config: TrackerConfig;
  readonly progress: ReadonlyMap<number, Progress>;
  /** The last log index: where new members' progress starts probing. */
  readonly lastIndex: number;
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;
}

export type ChangeResult =
  | { readonly ok: true; readonly config: TrackerConfig; readonly progress: ProgressMap }
  | { readonly ok: false; readonly error: string };

interface MutableConfig {
  voters: [Set<number>, Set<number>];
  autoLeave: boolean;
  learners: Set<number>;
  learnersNext: Set<number>;
}

function copy(input: ChangerInput): { config: MutableConfig; progress: ProgressMap } {
  const config: MutableConfig = {
    voters: [new Set(input.config.voters[0]), new Set(input.config.voters[1])],
    autoLeave: input.config.autoLeave,
    learners: new Set(input.config.learners),
    learnersNext: new Set(input.config.learnersNext),
  };
  const progress: ProgressMap = new Map();
  for (const [id, pr] of input.progress) progress.set(id, pr.clone());
  return { config, progress };
}

function fail(error: string): ChangeResult {
  return { ok: false, error };
}

/** Checks the invariants every configuration must satisfy; returns an error or undefined. */
export function checkConfig(config: TrackerConfig, progress: ReadonlyMap<number, Progress>): string | undefined {
  for (const ids of [config.voters[0], config.voters[1], config.learners, config.learnersNext]) {
    for (const id of ids) if (!progress.has(id)) return `no progress for ${id}`;
  }
  for (const id of config.learnersNext) {
    if (!config.voters[1].has(id)) return `${id} is in learners_next but not an outgoing voter`;
    if (progress.get(id)!.isLearner) return `${id} is in learners_next but already marked as learner`;
  }
  for (const id of config.learners) {
    if (config.voters[0].has(id) || config.voters[1].has(id)) return `${id} is both learner and voter`;
    if (!progress.get(id)!.isLearner) return `${id} is a learner but not marked as one`;
  }
  if (!isJoint(config)) {
    if (config.learnersNext.size > 0) return 'learners_next must be empty outside a joint config';
    if (config.autoLeave) return 'autoLeave must be false outside a joint config';
  }
  return undefined;
}

function finish(config: MutableConfig, progress: ProgressMap): ChangeResult {
  const frozen: TrackerConfig = config;
  const problem = checkConfig(frozen, progress);
  if (problem !== undefined) return fail(problem);
  return { ok: true, config: frozen, progress };
}

function initProgress(
  input: ChangerInput,
  config: MutableConfig,
  progress: ProgressMap,
  id: number,
  isLearner: boolean,
): void {
  if (isLearner) config.learners.add(id);
  else config.voters[0].add(id);
  progress.set(
    id,
    new Progress({
      // Probe from the end of the log: a new member usually needs a snapshot anyway.
      match: 0,
      next: Math.max(input.lastIndex, 1),
      inflights: new Inflights(input.inflightMessagesMax, input.inflightBytesMax),
      isLearner,
      // A new member counts as active so CheckQuorum does not fire before it could answer.
      recentActive: true,
    }),
  );
}

function makeVoter(input: ChangerInput, config: MutableConfig, progress: ProgressMap, id: number): void {
  const pr = progress.get(id);
  if (pr === undefined) {
    initProgress(input, config, progress, id, false);
    return;
  }
  pr.isLearner = false;
  config.learners.delete(id);
  config.learnersNext.delete(id);
  config.voters[0].add(id);
}

function remove(config: MutableConfig, progress: ProgressMap, id: number): void {
  if (!progress.has(id)) return;
  config.voters[0].delete(id);
  config.learners.delete(id);
  config.learnersNext.delete(id);
  // An outgoing voter keeps its progress until the joint configuration is left.
  if (!config.voters[1].has(id)) progress.delete(id);
}

function makeLearner(input: ChangerInput, config: MutableConfig, progress: ProgressMap, id: number): void {
  const pr = progress.get(id);
  if (pr === undefined) {
    initProgress(input, config, progress, id, true);
    return;
  }
  if (pr.isLearner) return;
  remove(config, progress, id);
  progress.set(id, pr);
  if (config.voters[1].has(id)) {
    // Still a voter of the outgoing half: it becomes a learner when the joint state is left.
    config.learnersNext.add(id);
  } else {
    pr.isLearner = true;
    config.learners.add(id);
  }
}

function applyChanges(
  input: ChangerInput,
  config: MutableConfig,
  progress: ProgressMap,
  changes: readonly ConfChangeSingle[],
): string | undefined {
  for (const change of changes) {
    if (!Number.isSafeInteger(change.nodeId) || change.nodeId <= 0) {
      return `invalid node id ${change.nodeId}`;
    }
    switch (change.type) {
      case 'add-voter':
        makeVoter(input, config, progress, change.nodeId);
        break;
      case 'add-learner':
        makeLearner(input, config, progress, change.nodeId);
        break;
      case 'remove':
        remove(config, progress, change.nodeId);
        break;
      case 'update':
        break;
    }
  }
  if (config.voters[0].size === 0) return 'removed all voters';
  return undefined;
}

function symmetricDifference(a: ReadonlySet<number>, b: ReadonlySet<number>): number {
  let n = 0;
  for (const id of a) if (!b.has(id)) n++;
  for (const id of b) if (!a.has(id)) n++;
  return n;
}

/** Enters a joint configuration: the current voters become the outgoing half. */
export function enterJoint(
  input: ChangerInput,
  autoLeave: boolean,
  changes: readonly ConfChangeSingle[],
): ChangeResult {
  if (isJoint(input.config)) return fail('config is already joint');
  if (input.config.voters[0].size === 0) return fail("can't make a zero-voter config joint");
  const { config, progress } = copy(input);
  config.voters[1] = new Set(config.voters[0]);
  const problem = applyChanges(input, config, progress, changes);
  if (problem !== undefined) return fail(problem);
  config.autoLeave = autoLeave;
  return finish(config, progress);
}

/** Leaves a joint configuration: the incoming half becomes the only one. */
export function leaveJoint(input: ChangerInput): ChangeResult {
  if (!isJoint(input.config)) return fail("can't leave a non-joint config");
  const { config, progress } = copy(input);
  for (const id of config.learnersNext) {
    config.learners.add(id);
    progress.get(id)!.isLearner = true;
  }
  config.learnersNext = new Set();
  for (const id of config.voters[1]) {
    if (!config.voters[0].has(id) && !config.learners.has(id)) progress.delete(id);
  }
  config.voters[1] = new Set();
  config.autoLeave = false;
  return finish(config, progress);
}

/** Applies changes that alter at most one voter, without a joint configuration. */
export function simpleChange(input: ChangerInput, changes: readonly ConfChangeSingle[]): ChangeResult {
  if (isJoint(input.config)) return fail("can't apply simple config change in joint config");
  const { config, progress } = copy(input);
  const problem = applyChanges(input, config, progress, changes);
  if (problem !== undefined) return fail(problem);
  if (symmetricDifference(input.config.voters[0], config.voters[0]) > 1) {
    return fail('more than one voter changed without entering joint config');
  }
  return finish(config, progress);
}

/** Applies a configuration change entry's content, choosing simple, enter-joint or leave-joint. */
export function applyConfChangeTo(input: ChangerInput, cc: ConfChange): ChangeResult {
  if (isLeaveJoint(cc)) return leaveJoint(input);
  const joint = entersJoint(cc);
  if (joint.joint) return enterJoint(input, joint.autoLeave, cc.changes);
  return simpleChange(input, cc.changes);
}

/**
 * Rebuilds a configuration from a ConfState (as stored with a snapshot or recovered at start),
 * replaying it as a sequence of changes from an empty configuration.
 */
export function restoreConfig(
  cs: ConfState,
  options: { lastIndex: number; inflightMessagesMax: number; inflightBytesMax: number },
): ChangeResult {
  // Before entering the joint state the voters were the outgoing ones; the incoming changes
  // remove them all and add back what the new state holds.
  const outgoing: ConfChangeSingle[] = cs.votersOutgoing.map((id) => ({ type: 'add-voter', nodeId: id }));
  const incoming: ConfChangeSingle[] = [
    ...cs.votersOutgoing.map((id): ConfChangeSingle => ({ type: 'remove', nodeId: id })),
    ...cs.voters.map((id): ConfChangeSingle => ({ type: 'add-voter', nodeId: id })),
    ...cs.learners.map((id): ConfChangeSingle => ({ type: 'add-learner', nodeId: id })),
    ...cs.learnersNext.map((id): ConfChangeSingle => ({ type: 'add-learner', nodeId: id })),
  ];
  let state: ChangerInput = {
    config: EMPTY_TRACKER_CONFIG,
    progress: new Map(),
    ...options,
  };
  const step = (result: ChangeResult): string | undefined => {
    if (!result.ok) return result.error;
    state = { ...state, config: result.config, progress: result.progress };
    return undefined;
  };
  if (outgoing.length === 0) {
    for (const change of incoming) {
      const problem = step(simpleChange(state, [change]));
      if (problem !== undefined) return fail(problem);
    }
  } else {
    for (const change of outgoing) {
      const problem = step(simpleChange(state, [change]));
      if (problem !== undefined) return fail(problem);
    }
    const problem = step(enterJoint(state, cs.autoLeave, incoming));
    if (problem !== undefined) return fail(problem);
  }
  return { ok: true, config: state.config, progress: new Map(state.progress) };
}
