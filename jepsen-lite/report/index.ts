/** jepsen-lite/report: a run's report folder (JSON + HTML) and the progress bar. The front door. */
export type {
  ReportLinearizability,
  ReportPartition,
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
export { blockedIds, escapeHtml, pauseLine, renderHtml, scriptJson, timelineOpsMax } from './html.js';
export { ProgressBar, SeedProgress, progressBarWidth, progressStepPercent, type ProgressCounts, type SeedCounts } from './progress.js';
export { exitCodeOfVerdicts, exitOk, exitUnknown, exitViolation, type VerdictCounts } from './verdict.js';
export { htmlFileName, historyFileName, resultsFileName, writeReport, type ReportPaths } from './write.js';
