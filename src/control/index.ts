/** The control plane's front door: instances on one host, their templates and config files. */
export { InstanceError, type InstanceErrorCode } from './errors.js';
export { checkInstanceName, dkvHome, instancePaths, instancesDir, type InstancePaths } from './home.js';
export {
  type CreatedInstance,
  type CreateOptions,
  createInstance,
  existingInstance,
  type InstanceSummary,
  listInstances,
  removeInstance,
  serverEnvironment,
  type StartResult,
  startInstance,
  type StopResult,
  stopInstance,
} from './instances.js';
export * as limits from './limits.js';
export { followLog, tailLines } from './logs.js';
export { portFree } from './ports.js';
export { processState, type ProcessState } from './processes.js';
export { type InstanceStatus, instanceStatus } from './status.js';
export { parseTemplate, type Template, templateNames } from './templates.js';
export { checkConfigFile, type ConfigFileCheck } from '../server/config.js';
