/**
 * The lock model: a lock per name with fencing tokens, guarding one resource per lock (the
 * checker splits per lock name).
 *
 * What is checked, and why this much:
 * - `acquire` returns a token strictly greater than every token the lock issued before it.
 *   It is allowed at any time, even while someone holds the lock: a holder's lease can expire
 *   without the history showing it (a paused or partitioned client), and then a correct lock
 *   service hands the lock to the next client. Mutual exclusion of holders is therefore not
 *   observable, and the model does not track holders; `release` changes nothing it checks.
 * - The safety property is on the guarded resource — "no two holders' guarded writes
 *   interleave": a `write` with token t is accepted iff t >= the largest token the resource has
 *   accepted (the resource remembers the newest token it has seen; a rejected write is older by
 *   definition, so it raises nothing). Once a newer token has written, every older token's write
 *   must answer `accepted: false`; the same holder may write again with its token.
 * - `read` returns the value of the last accepted write (null before any).
 *
 * A pending `acquire` that took effect issued some unknown token u > the last issued t, so the
 * next acquire must return more than u, i.e. more than t + 1: the state keeps `floor`, an
 * exclusive lower bound for the next token (null: none yet), and a pending acquire raises it by 1.
 * Since that can only make later acquires harder to accept, and nobody can write with a token
 * nobody learned, the checker drops pending acquires (`droppableWhenPending`).
 */
import type { LockInput, LockOutput } from '../../history.js';
import {
  type Model,
  fail,
  requireBoolean,
  requireInteger,
  requireNullableString,
  requireRecord,
  requireSameFunction,
  requireString,
  show,
} from './model.js';

export interface LockState {
  /** The next acquire must return a token > floor (null: any token). */
  readonly floor: number | null;
  /** The largest token the resource has accepted (null: no write accepted yet). */
  readonly fence: number | null;
  /** The resource's value: that of the last accepted write. */
  readonly value: string | null;
}

const initialState: LockState = { floor: null, fence: null, value: null };

function stepAcquire(state: LockState, output: LockOutput | undefined): LockState | undefined {
  if (output === undefined) return state.floor === null ? state : { ...state, floor: state.floor + 1 };
  if (output.f !== 'acquire' || (state.floor !== null && output.token <= state.floor)) return undefined;
  return { ...state, floor: output.token };
}

function stepWrite(state: LockState, token: number, value: string, output: LockOutput | undefined): LockState | undefined {
  const accepted = state.fence === null || token >= state.fence;
  if (output !== undefined && (output.f !== 'write' || output.accepted !== accepted)) return undefined;
  return accepted ? { ...state, fence: token, value } : state;
}

export const lockModel: Model<LockInput, LockOutput, LockState> = {
  name: 'lock',
  wholeHistory: false,
  partitionKey: (input) => input.lock,
  initial: () => initialState,
  step(state, input, output) {
    switch (input.f) {
      case 'acquire':
        return stepAcquire(state, output);
      case 'release':
        return output === undefined || output.f === 'release' ? state : undefined;
      case 'write':
        return stepWrite(state, input.token, input.value, output);
      case 'read':
        if (output === undefined) return state;
        return output.f === 'read' && output.value === state.value ? state : undefined;
    }
  },
  stateKey: (state) => JSON.stringify([state.floor, state.fence, state.value]),
  // floor and fence only grow
  hopeless: (state, input, output) =>
    (output.f === 'acquire' && state.floor !== null && output.token <= state.floor) ||
    (input.f === 'write' && output.f === 'write' && output.accepted && state.fence !== null && input.token < state.fence),
  droppableWhenPending: (input) => input.f === 'acquire',
  readOnly: (input) => input.f === 'read' || input.f === 'release',
  validate(input, output) {
    const record = requireRecord('lock', input, 'input');
    requireString('lock', record, 'lock');
    if (record.f === 'release' || record.f === 'write') requireInteger('lock', record, 'token');
    if (record.f === 'write') requireString('lock', record, 'value');
    if (!['acquire', 'release', 'write', 'read'].includes(record.f as string)) fail('lock', `unknown input ${show(input)}`);
    if (output === undefined) return;
    const result = requireRecord('lock', output, 'output');
    requireSameFunction('lock', record, result);
    if (result.f === 'acquire') requireInteger('lock', result, 'token');
    if (result.f === 'write') requireBoolean('lock', result, 'accepted');
    if (result.f === 'read') requireNullableString('lock', result, 'value');
  },
  describe(input, output) {
    const call =
      input.f === 'acquire' || input.f === 'read'
        ? `${input.f} ${input.lock}`
        : input.f === 'release'
          ? `release ${input.lock} #${input.token}`
          : `write ${input.lock} #${input.token} ${show(input.value)}`;
    if (output === undefined) return `${call} ⇒ ?`;
    if (output.f === 'acquire') return `${call} ⇒ #${output.token}`;
    if (output.f === 'write') return `${call} ⇒ ${output.accepted ? 'accepted' : 'rejected'}`;
    if (output.f === 'read') return `${call} ⇒ ${show(output.value)}`;
    return `${call} ⇒ ok`;
  },
};
