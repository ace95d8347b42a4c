/**
 * The set model: one grow-only set of strings for the whole history (a read sees every element,
 * so the history cannot be split). `add` inserts (adding an element already there changes
 * nothing); `read` returns every element, compared as a set (order and repeats ignored).
 */
import type { SetInput, SetOutput } from '../../history.js';
import { type Model, fail, requireRecord, requireSameFunction, requireString, show } from './model.js';

export interface SetState {
  /** Sorted, without repeats. */
  readonly values: readonly string[];
  /** The canonical form, computed once per state. */
  readonly key: string;
}

const canonicalOfOutput = new WeakMap<readonly string[], string>();

/** A read's values as a canonical key (sorted, without repeats), computed once per output. */
function canonicalValues(values: readonly string[]): string {
  let key = canonicalOfOutput.get(values);
  if (key === undefined) {
    key = JSON.stringify([...new Set(values)].sort());
    canonicalOfOutput.set(values, key);
  }
  return key;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Index of the first element >= value (binary search). */
function lowerBound(values: readonly string[], value: string): number {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareStrings(values[middle]!, value) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

export const setModel: Model<SetInput, SetOutput, SetState> = {
  name: 'set',
  wholeHistory: true,
  partitionKey: () => '',
  initial: () => ({ values: [], key: '[]' }),
  step(state, input, output) {
    if (input.f === 'read') {
      if (output === undefined) return state;
      return output.f === 'read' && canonicalValues(output.values) === state.key ? state : undefined;
    }
    if (output !== undefined && output.f !== 'add') return undefined;
    const at = lowerBound(state.values, input.value);
    if (state.values[at] === input.value) return state;
    const values = [...state.values.slice(0, at), input.value, ...state.values.slice(at)];
    return { values, key: JSON.stringify(values) };
  },
  stateKey: (state) => state.key,
  readOnly: (input) => input.f === 'read',
  validate(input, output) {
    const record = requireRecord('set', input, 'input');
    if (record.f === 'add') requireString('set', record, 'value');
    else if (record.f !== 'read') fail('set', `unknown input ${show(input)}`);
    if (output === undefined) return;
    const result = requireRecord('set', output, 'output');
    requireSameFunction('set', record, result);
    if (result.f === 'read') {
      const values = result.values;
      if (!Array.isArray(values) || !values.every((value) => typeof value === 'string')) {
        fail('set', `read values are not strings: ${show(output)}`);
      }
    }
  },
  describe(input, output) {
    const call = input.f === 'read' ? 'read' : `add ${show(input.value)}`;
    if (output === undefined) return `${call} ⇒ ?`;
    return output.f === 'read' ? `${call} ⇒ ${show(output.values)}` : `${call} ⇒ ok`;
  },
};
