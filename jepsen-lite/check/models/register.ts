/**
 * The register model: one string register per key (the checker splits a history per key, so a
 * state is one key's value). A missing key reads as null. `write` always succeeds; `cas from→to`
 * succeeds iff the value is `from` (a missing key never equals a string), and a cas that answered
 * `succeeded: false` says the value differed from `from` at its linearization point.
 */
import type { RegisterInput, RegisterOutput } from '../../history.js';
import {
  type Model,
  fail,
  requireBoolean,
  requireRecord,
  requireSameFunction,
  requireString,
  requireNullableString,
  show,
} from './model.js';

export type RegisterState = string | null;

export const registerModel: Model<RegisterInput, RegisterOutput, RegisterState> = {
  name: 'register',
  wholeHistory: false,
  partitionKey: (input) => input.key,
  initial: () => null,
  step(state, input, output) {
    switch (input.f) {
      case 'read':
        if (output === undefined) return state;
        return output.f === 'read' && output.value === state ? state : undefined;
      case 'write':
        return input.value;
      case 'cas': {
        const matches = state === input.from;
        if (output !== undefined && (output.f !== 'cas' || output.succeeded !== matches)) return undefined;
        return matches ? input.to : state;
      }
    }
  },
  // A prefix keeps null apart from the string "null".
  stateKey: (state) => (state === null ? 'n' : `s${state}`),
  readOnly: (input) => input.f === 'read',
  validate(input, output) {
    const record = requireRecord('register', input, 'input');
    requireString('register', record, 'key');
    if (record.f === 'write') requireString('register', record, 'value');
    else if (record.f === 'cas') {
      requireString('register', record, 'from');
      requireString('register', record, 'to');
    } else if (record.f !== 'read') fail('register', `unknown input ${show(input)}`);
    if (output === undefined) return;
    const result = requireRecord('register', output, 'output');
    requireSameFunction('register', record, result);
    if (result.f === 'read') requireNullableString('register', result, 'value');
    if (result.f === 'cas') requireBoolean('register', result, 'succeeded');
  },
  describe(input, output) {
    const call =
      input.f === 'read' ? `read ${input.key}` : input.f === 'write' ? `write ${input.key} ${show(input.value)}` : `cas ${input.key} ${show(input.from)}→${show(input.to)}`;
    if (output === undefined) return `${call} ⇒ ?`;
    if (output.f === 'read') return `${call} ⇒ ${show(output.value)}`;
    if (output.f === 'cas') return `${call} ⇒ ${output.succeeded}`;
    return `${call} ⇒ ok`;
  },
};
