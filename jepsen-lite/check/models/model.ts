/**
 * What the linearizability search needs from a model: a sequential specification it can step,
 * states it can compare (for Lowe's memoization), and the key it may split a history on
 * (P-compositionality). Models are pure: `step` never mutates the state it is given.
 */
import type { ModelName } from '../../history.js';

export interface Model<Input, Output, State> {
  readonly name: ModelName;
  /**
   * True when the model cannot be split (every op goes in partition ''), e.g. etcd's key space,
   * whose revisions couple keys. Otherwise `partitionKey` names an independent object.
   */
  readonly wholeHistory: boolean;
  partitionKey(input: Input): string;
  initial(): State;
  /**
   * The state after `input` returned `output`, or `undefined` when the model cannot return that
   * output from `state`. `output` undefined: the op's result is unknown (it is pending), so any
   * result is fine and the state moves as the op would have moved it.
   */
  step(state: State, input: Input, output: Output | undefined): State | undefined;
  /** A canonical string for the state: two states behave the same iff their keys are equal. */
  stateKey(state: State): string;
  /** Whether the op can change nothing (a pending one is then dropped: it constrains nothing). */
  readOnly(input: Input): boolean;
  /**
   * Optional, to let the search prune: true when no state reachable from `state` can accept this
   * ok op (e.g. its revision is already behind the store's; the parts of the state it looks at
   * only grow). Must be sound: never true when some later state could accept it.
   */
  hopeless?(state: State, input: Input, output: Output): boolean;
  /**
   * Optional: true when a pending op of this kind can be dropped although it changes the state,
   * because its taking effect could only make later ops harder to accept (a lock acquire whose
   * token nobody learned only raises the bar for later tokens).
   */
  droppableWhenPending?(input: Input): boolean;
  /** Throws a TypeError when the op is not one of this model's (output undefined: pending). */
  validate(input: unknown, output: unknown): void;
  /** A short human-readable form, e.g. `cas x a→b ⇒ true`. */
  describe(input: Input, output: Output | undefined): string;
}

/** A model with its types erased, as the checker holds it (method parameters are bivariant). */
export type AnyModel = Model<unknown, unknown, unknown>;

// ---------------------------------------------------------------------------------------------
// Shape checks shared by the models' `validate`

export function fail(model: ModelName, what: string): never {
  throw new TypeError(`linearizability checker (${model}): ${what}`);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function requireRecord(model: ModelName, value: unknown, what: string): Record<string, unknown> {
  if (!isRecord(value)) fail(model, `${what} is not an object: ${show(value)}`);
  return value;
}

export function requireString(model: ModelName, record: Record<string, unknown>, field: string): string {
  const value = record[field];
  if (typeof value !== 'string') fail(model, `field ${field} is not a string in ${show(record)}`);
  return value;
}

export function requireNullableString(model: ModelName, record: Record<string, unknown>, field: string): string | null {
  const value = record[field];
  if (value !== null && typeof value !== 'string') fail(model, `field ${field} is not a string or null in ${show(record)}`);
  return value;
}

export function requireInteger(model: ModelName, record: Record<string, unknown>, field: string, min = Number.MIN_SAFE_INTEGER): number {
  const value = record[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    fail(model, `field ${field} is not a safe integer >= ${min} in ${show(record)}`);
  }
  return value;
}

export function requireBoolean(model: ModelName, record: Record<string, unknown>, field: string): boolean {
  const value = record[field];
  if (typeof value !== 'boolean') fail(model, `field ${field} is not a boolean in ${show(record)}`);
  return value;
}

/** The output's `f` must name the input's function. */
export function requireSameFunction(model: ModelName, input: Record<string, unknown>, output: Record<string, unknown>): void {
  if (output.f !== input.f) fail(model, `output ${show(output)} does not answer input ${show(input)}`);
}

/** Characters of a value shown in an error or a description. */
export const shownCharsMax = 120;

export function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= shownCharsMax ? text : `${text.slice(0, shownCharsMax)}…`;
}
