/** The models the linearizability checker knows, by name. */
import type { ModelName } from '../../history.js';
import { counterModel } from './counter.js';
import { kvModel } from './kv.js';
import { lockModel } from './lock.js';
import type { AnyModel } from './model.js';
import { registerModel } from './register.js';
import { setModel } from './set.js';

export const models: { readonly [name in ModelName]: AnyModel } = {
  register: registerModel as AnyModel,
  kv: kvModel as AnyModel,
  set: setModel as AnyModel,
  counter: counterModel as AnyModel,
  lock: lockModel as AnyModel,
};

export { registerModel, type RegisterState } from './register.js';
export { kvModel, executeKv, kvOutputsEqual, kvInitialRevision, kvStateOf, changedStore, type KvState, type KeyMeta } from './kv.js';
export { setModel, type SetState } from './set.js';
export { counterModel, type CounterState } from './counter.js';
export { lockModel, type LockState } from './lock.js';
export type { Model, AnyModel } from './model.js';
