/** jepsen-lite/report: a run's report folder (JSON + HTML) and the progress bar. The front door. */
export type {
  ReportLinearizability,
  ReportPartition,
  ReplicaResults,
  RunHistory,
  RunInfo,
  RunResults,
  RunVerdict,
  WatchResults,
} from './types.js';
export {
  ReportFormatError,
  bytesMarker,
  decodeBytes,
  deserializeWatchHistory,
  deserializeWatchRecord,
  encodeBytes,
  historyFormat,
  historyJson,
  parseHistoryJson,
  resultsFormat,
  resultsJson,
  serializeWatchHistory,
  serializeWatchRecord,
  type SerializedWatchHistory,
  type SerializedWatchRecord,
} from './json.js';
export { blockedIds, escapeHtml, failureWindow, pauseLine, renderHtml, scriptJson, timelineOpsMax, violationColour } from './html.js';
export { cycleText, primaryEvidence, violatingIds, type Evidence, type EvidenceSource } from './evidence.js';
export { fallbackColour, faultColour, faultKindLabel, faultKindsPresent } from './faults.js';
export { violatingMinWidthPx } from './timeline.js';
export { ProgressBar, SeedProgress, progressBarWidth, progressStepPercent, type ProgressCounts, type SeedCounts } from './progress.js';
export { exitCodeOfVerdicts, exitOk, exitUnknown, exitViolation, type VerdictCounts } from './verdict.js';
export { htmlFileName, historyFileName, resultsFileName, writeReport, type ReportPaths } from './write.js';
