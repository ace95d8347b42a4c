/**
 * The counter model: one integer counter per key (the checker splits per key), starting at 0.
 * `add delta` adds; its output's `value`, when present, is the counter right after the add.
 * `read` returns the counter.
 */
import type { CounterInput, CounterOutput } from '../../history.js';
import { type Model, fail, requireInteger, requireRecord, requireSameFunction, requireString, show } from './model.js';

export type CounterState = number;

export const counterModel: Model<CounterInput, CounterOutput, CounterState> = {
  name: 'counter',
  wholeHistory: false,
  partitionKey: (input) => input.key,
  initial: () => 0,
  step(state, input, output) {
    if (input.f === 'read') {
      if (output === undefined) return state;
      return output.f === 'read' && output.value === state ? state : undefined;
    }
    const next = state + input.delta;
    if (output === undefined) return next;
    if (output.f !== 'add' || (output.value !== undefined && output.value !== next)) return undefined;
    return next;
  },
  stateKey: (state) => String(state),
  readOnly: (input) => input.f === 'read',
  validate(input, output) {
    const record = requireRecord('counter', input, 'input');
    requireString('counter', record, 'key');
    if (record.f === 'add') requireInteger('counter', record, 'delta');
    else if (record.f !== 'read') fail('counter', `unknown input ${show(input)}`);
    if (output === undefined) return;
    const result = requireRecord('counter', output, 'output');
    requireSameFunction('counter', record, result);
    if (result.f === 'read' || result.value !== undefined) requireInteger('counter', result, 'value');
  },
  describe(input, output) {
    const call = input.f === 'read' ? `read ${input.key}` : `add ${input.key} ${input.delta}`;
    if (output === undefined) return `${call} ⇒ ?`;
    return `${call} ⇒ ${output.value === undefined ? 'ok' : output.value}`;
  },
};
