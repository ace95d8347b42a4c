/** The models the linearizability checker knows, by name. */
import type { ModelName } from '../../history';
import { counterModel } from './counter';
import { kvModel } from './kv';
import { lockModel } from './lock';
import type { AnyModel } from './model';
import { registerModel } from './register';
import { setModel } from './set';

export const models: { readonly [name in ModelName]: AnyModel } = {
  register: registerModel as AnyModel,
  kv: kvModel as AnyModel,
  set: setModel as AnyModel,
  counter: counterModel as AnyModel,
  lock: lockModel as AnyModel,
};

export { registerModel, type RegisterState } from './register';
export { kvModel, executeKv, kvOutputsEqual, kvInitialRevision, type KvState, type KeyMeta } from './kv';
export { setModel, type SetState } from './set';
export { counterModel, type CounterState } from './counter';
export { lockModel, type LockState } from './lock';
export type { Model, AnyModel } from './model';
