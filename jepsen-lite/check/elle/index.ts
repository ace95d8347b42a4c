/** jepsen-lite/check/elle: the transactional (Elle) checker. The front door of this folder. */
export { checkElle, type ElleCheckOptions, type ElleCheckResult } from './check.js';
export { elleAnomalyOrder, elleConsistencyModels, elleRuledOut } from './anomalies.js';
export {
  elleExamplesPerAnomalyMax,
  elleTxnsMax,
  elleCycleStartsPerSearchMax,
  elleCycleEdgeVisitsPerSearchMax,
  elleExplanationEdgesMax,
  elleListShownElementsMax,
} from './limits.js';
export type {
  ElleModel,
  ElleRead,
  ElleWrite,
  ElleMicroOp,
  ElleTxn,
  ElleEdgeType,
  ElleEdge,
  ElleAnomalyName,
  ElleAnomaly,
  ElleResult,
} from './types.js';
