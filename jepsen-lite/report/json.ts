/**
 * The report's JSON files. `history.json` holds everything needed to check the run again: the
 * run info, fault windows, operations (one per line, so the file greps and diffs well) and the
 * watch streams. Watch records carry bytes; in JSON a key or value is its UTF-8 text when the
 * bytes are valid UTF-8, else `base64:` followed by the base64 of the bytes (text that itself
 * starts with `base64:` is stored the second way, so decoding is never ambiguous).
 */
import type {
  HistoryRevision,
  ObserverSegment,
  WatchEvent,
  WatchHistory,
  WatchKeyValue,
  WatchParams,
  WatchRecord,
  WatchResponse,
} from '../check/index.js';
import type { FaultWindow, Operation } from '../history.js';
import type { RunHistory, RunInfo, RunResults } from './types.js';

export const historyFormat = 'jepsen-lite-history/1';
export const resultsFormat = 'jepsen-lite-results/1';
export const bytesMarker = 'base64:';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

export function encodeBytes(bytes: Uint8Array): string {
  let text: string | undefined;
  try {
    text = utf8.decode(bytes);
  } catch {
    text = undefined;
  }
  if (text !== undefined && !text.startsWith(bytesMarker)) return text;
  return bytesMarker + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function decodeBytes(text: string): Uint8Array {
  if (!text.startsWith(bytesMarker)) return encoder.encode(text);
  return new Uint8Array(Buffer.from(text.slice(bytesMarker.length), 'base64'));
}

// ---- Watch records --------------------------------------------------------------------------

type Serialized<T> = T extends Uint8Array
  ? string
  : T extends readonly (infer E)[]
    ? Serialized<E>[]
    : T extends object
      ? { -readonly [K in keyof T]: Serialized<T[K]> }
      : T;

export type SerializedWatchKeyValue = Serialized<WatchKeyValue>;
export type SerializedWatchEvent = Serialized<WatchEvent>;
export type SerializedWatchParams = Serialized<WatchParams>;
export type SerializedWatchResponse = Serialized<WatchResponse>;
export type SerializedWatchRecord = Serialized<WatchRecord>;
export type SerializedWatchHistory = Serialized<WatchHistory>;

/** Copies `value` with every Uint8Array field mapped by `bytes` (plain data only). */
function mapBytes(value: unknown, bytes: (b: Uint8Array) => unknown): unknown {
  if (value instanceof Uint8Array) return bytes(value);
  if (Array.isArray(value)) return value.map((v) => mapBytes(v, bytes));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = mapBytes(v, bytes);
    return out;
  }
  return value;
}

export function serializeWatchRecord(record: WatchRecord): SerializedWatchRecord {
  return mapBytes(record, encodeBytes) as SerializedWatchRecord;
}

function keyValueIn(kv: SerializedWatchKeyValue): WatchKeyValue {
  return { ...kv, key: decodeBytes(kv.key), value: decodeBytes(kv.value) };
}

function eventIn(event: SerializedWatchEvent): WatchEvent {
  const { prevKv, value, ...rest } = event;
  return {
    ...rest,
    key: decodeBytes(event.key),
    ...(value === undefined ? {} : { value: decodeBytes(value) }),
    ...(prevKv === undefined ? {} : { prevKv: keyValueIn(prevKv) }),
  };
}

function responseIn(response: SerializedWatchResponse): WatchResponse {
  if (response.kind !== 'events') return response;
  return { ...response, events: response.events.map(eventIn) };
}

export function deserializeWatchRecord(record: SerializedWatchRecord): WatchRecord {
  const { rangeEnd, ...params } = record.params;
  return {
    ...record,
    params: { ...params, key: decodeBytes(params.key), ...(rangeEnd === undefined ? {} : { rangeEnd: decodeBytes(rangeEnd) }) },
    responses: record.responses.map(responseIn),
  };
}

export function serializeWatchHistory(history: WatchHistory): SerializedWatchHistory {
  return mapBytes(history, encodeBytes) as SerializedWatchHistory;
}

export function deserializeWatchHistory(history: SerializedWatchHistory): WatchHistory {
  const revisions: HistoryRevision[] = history.revisions.map((r) => ({ revision: r.revision, events: r.events.map(eventIn) }));
  return { ...history, revisions };
}

// ---- Files ----------------------------------------------------------------------------------

/** JSON.stringify for checker output: bytes as above, bigints as strings, Maps and Sets as plain JSON. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return encodeBytes(value);
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Map) return Object.fromEntries(value);
  if (value instanceof Set) return [...value];
  return value;
}

function lines(items: readonly unknown[]): string {
  if (items.length === 0) return '[]';
  return `[\n${items.map((item) => `    ${JSON.stringify(item, replacer)}`).join(',\n')}\n  ]`;
}

export function historyJson(info: RunInfo, history: RunHistory): string {
  const parts = [
    `  "format": ${JSON.stringify(historyFormat)}`,
    `  "info": ${JSON.stringify(info, replacer)}`,
    `  "faults": ${lines(history.faults)}`,
    `  "operations": ${lines(history.operations)}`,
  ];
  if (history.watches !== undefined) parts.push(`  "watches": ${lines(history.watches.map(serializeWatchRecord))}`);
  if (history.watchHistory !== undefined) parts.push(`  "watchHistory": ${JSON.stringify(serializeWatchHistory(history.watchHistory))}`);
  if (history.observers !== undefined) parts.push(`  "observers": ${lines(history.observers)}`);
  return `{\n${parts.join(',\n')}\n}\n`;
}

export function resultsJson(info: RunInfo, results: RunResults): string {
  return `${JSON.stringify({ format: resultsFormat, info, results }, replacer, 2)}\n`;
}

export class ReportFormatError extends Error {
  override readonly name = 'ReportFormatError';
}

interface HistoryFile {
  format?: unknown;
  info?: RunInfo;
  faults?: FaultWindow[];
  operations?: Operation[];
  watches?: SerializedWatchRecord[];
  watchHistory?: SerializedWatchHistory;
  observers?: ObserverSegment[];
}

/** Reads a `history.json` back: the run info and the history, watch bytes restored. */
export function parseHistoryJson(text: string): { info: RunInfo; history: RunHistory } {
  const file = JSON.parse(text) as HistoryFile;
  if (file.format !== historyFormat) throw new ReportFormatError(`not a ${historyFormat} file (format ${String(file.format)})`);
  if (file.info === undefined || !Array.isArray(file.operations) || !Array.isArray(file.faults)) {
    throw new ReportFormatError('history file without info, operations or faults');
  }
  const history: RunHistory = {
    operations: file.operations,
    faults: file.faults,
    ...(file.watches === undefined ? {} : { watches: file.watches.map(deserializeWatchRecord) }),
    ...(file.watchHistory === undefined ? {} : { watchHistory: deserializeWatchHistory(file.watchHistory) }),
    ...(file.observers === undefined ? {} : { observers: file.observers }),
  };
  return { info: file.info, history };
}
