/**
 * How the data commands print, in etcdctl's formats: "simple" lines, `-w json` (what etcdctl's
 * Go `encoding/json` makes of the response structs: int64 as exact numbers, bytes as base64,
 * zero fields omitted) and `-w table` (tablewriter's boxes, cells right-aligned).
 *
 * Responses arrive decoded with `longsAsStrings` (int64 as decimal text, bytes as Buffers).
 */
import type { Decoded } from '../client/index.js';

/** A JSON number written exactly as its decimal text (int64s past 2^53 stay exact). */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** Go's json.Marshal of `value`: Buffers as base64, JsonNumbers raw, undefined fields left out. */
export function goJson(value: unknown): string {
  if (value instanceof JsonNumber) return value.text;
  if (Buffer.isBuffer(value)) return `"${value.toString('base64')}"`;
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const fields = Object.entries(value).filter(([, v]) => v !== undefined);
    return `{${fields.map(([k, v]) => `${goString(k)}:${goJson(v)}`).join(',')}}`;
  }
  if (typeof value === 'string') return goString(value);
  return JSON.stringify(value);
}

/** A JSON string as Go writes it: <, > and & escaped too. */
function goString(text: string): string {
  return JSON.stringify(text).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// omitempty: a zero value is left out, as Go's encoder does for the protos' fields.
export const int = (text: unknown): JsonNumber | undefined => (text === undefined || String(text) === '0' ? undefined : new JsonNumber(String(text)));
export const bytes = (value: unknown): Buffer | undefined => (Buffer.isBuffer(value) && value.length > 0 ? value : undefined);
export const flag = (value: unknown): true | undefined => (value === true ? true : undefined);
export const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);
export const list = <T>(values: unknown, each: (v: Decoded) => T): T[] | undefined => {
  const array = (values ?? []) as Decoded[];
  return array.length === 0 ? undefined : array.map(each);
};

export function headerJson(header: unknown): object | undefined {
  if (header === undefined || header === null) return undefined;
  const h = header as Decoded;
  return { cluster_id: int(h.cluster_id), member_id: int(h.member_id), revision: int(h.revision), raft_term: int(h.raft_term) };
}

export function kvJson(kv: Decoded): object {
  return {
    key: bytes(kv.key),
    create_revision: int(kv.create_revision),
    mod_revision: int(kv.mod_revision),
    version: int(kv.version),
    value: bytes(kv.value),
    lease: int(kv.lease),
  };
}

export const rangeJson = (r: Decoded): object => ({ header: headerJson(r.header), kvs: list(r.kvs, kvJson), more: flag(r.more), count: int(r.count) });
export const putJson = (r: Decoded): object => ({ header: headerJson(r.header), prev_kv: r.prev_kv == null ? undefined : kvJson(r.prev_kv as Decoded) });
export const deleteJson = (r: Decoded): object => ({ header: headerJson(r.header), deleted: int(r.deleted), prev_kvs: list(r.prev_kvs, kvJson) });

export function txnJson(r: Decoded): object {
  // Go's encoder names a oneof's wrapper by its struct field: {"Response":{"ResponsePut":…}}.
  const op = (o: Decoded): object => {
    if (o.response_range != null) return { Response: { ResponseRange: rangeJson(o.response_range as Decoded) } };
    if (o.response_put != null) return { Response: { ResponsePut: putJson(o.response_put as Decoded) } };
    if (o.response_delete_range != null) return { Response: { ResponseDeleteRange: deleteJson(o.response_delete_range as Decoded) } };
    return { Response: { ResponseTxn: txnJson(o.response_txn as Decoded) } };
  };
  return { header: headerJson(r.header), succeeded: flag(r.succeeded), responses: list(r.responses, op) };
}

export function memberJson(m: Decoded): object {
  const urls = (v: unknown): string[] | undefined => ((v as string[] | undefined)?.length ? (v as string[]) : undefined);
  return { ID: int(m.ID), name: text(m.name), peerURLs: urls(m.peerURLs), clientURLs: urls(m.clientURLs), isLearner: flag(m.isLearner) };
}

/** A key and its value, a line each (etcdctl's printKV); only the value with `valueOnly`. */
export function simpleKv(kv: Decoded, valueOnly: boolean): string {
  const value = `${(kv.value as Buffer).toString()}\n`;
  return valueOnly ? value : `${(kv.key as Buffer).toString()}\n${value}`;
}

/** A uint64 id (decimal text, maybe of a negative int64) in lowercase hex, as etcdctl's %x. */
export function idHex(id: unknown): string {
  return BigInt.asUintN(64, BigInt(String(id))).toString(16);
}

/**
 * A table as etcdctl's tablewriter draws it: headers centred, cells right-aligned, one space of
 * padding, `+---+` borders.
 */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const border = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+\n`;
  const centred = (cell: string, width: number): string => {
    const gap = width - cell.length;
    const left = Math.floor(gap / 2);
    return ' '.repeat(left) + cell + ' '.repeat(gap - left);
  };
  const line = (cells: readonly string[], pad: (cell: string, width: number) => string): string => `| ${cells.map((c, i) => pad(c, widths[i]!)).join(' | ')} |\n`;
  return border + line(header, centred) + border + rows.map((row) => line(row, (c, w) => c.padStart(w))).join('') + border;
}

const byteUnits = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];

/** go-humanize's Bytes (SI units), which etcdctl prints a db size with: "20 kB", "1.2 MB". */
export function humanBytes(size: number): string {
  if (size < 10) return `${size} B`;
  const e = Math.floor(Math.log(size) / Math.log(1000));
  const value = Math.floor((size / 1000 ** e) * 10 + 0.5) / 10;
  return `${value < 10 ? value.toFixed(1) : roundHalfEven(value)} ${byteUnits[e]}`;
}

/** Go's %.0f: a value exactly halfway rounds to even. */
function roundHalfEven(value: number): string {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff === 0.5) return String(floor % 2 === 0 ? floor : floor + 1);
  return String(Math.round(value));
}

/** A duration as Go's time.Duration prints it ("3.668066ms", "850µs", "1.2s"). */
export function goDuration(nanoseconds: bigint): string {
  const units: Array<[bigint, string]> = [
    [1_000_000_000n, 's'],
    [1_000_000n, 'ms'],
    [1_000n, 'µs'],
  ];
  for (const [size, unit] of units) {
    if (nanoseconds >= size) {
      const whole = nanoseconds / size;
      const fraction = (nanoseconds % size).toString().padStart(size.toString().length - 1, '0').replace(/0+$/, '');
      return `${whole}${fraction === '' ? '' : `.${fraction}`}${unit}`;
    }
  }
  return `${nanoseconds}ns`;
}
