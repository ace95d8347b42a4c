/**
 * A Range whose keys span shards, answered by merging what each shard answers for its part, with
 * etcd's rules for one store: keys in key order (or sorted by the request's target and order,
 * ties in key order), `limit` applied after the sort, `count` the keys of the whole range before
 * filters and limit, `more` whether keys past the limit were left out, `keys_only` and
 * `count_only` as asked. Each part is read from its shard's state as it stands: the merge is not
 * one snapshot of every shard (see docs/etcd-api.md), and it is refused at a past revision, which
 * names no state across shards.
 *
 * Pure: each part's reader is given; test/server/range-merge.test.ts checks the merge against one
 * store answering the unsplit range.
 */
import { type KeyValue, type RangeRequest, type RangeResponse, sortKeyValues } from '../../storage/index.js';
import type { KeyRange } from '../runtime/index.js';

export interface RangePartReader {
  /** The part of the request's range this shard serves (etcd's conventions). */
  readonly range: KeyRange;
  /** The shard's answer to `request` over its part (a part another member serves answers later). */
  read(request: RangeRequest): RangeResponse | Promise<RangeResponse>;
}

export interface MergedRange {
  readonly kvs: KeyValue[];
  readonly more: boolean;
  readonly count: number;
}

const EMPTY = new Uint8Array(0);

function isFiltered(request: RangeRequest): boolean {
  return (request.minModRevision ?? 0) !== 0 || (request.maxModRevision ?? 0) !== 0 || (request.minCreateRevision ?? 0) !== 0 || (request.maxCreateRevision ?? 0) !== 0;
}

/** Merges the parts' answers (parts in key order, read one after another). `request.revision` must be the current one (0). */
export async function mergeRange(request: RangeRequest, parts: readonly RangePartReader[]): Promise<MergedRange> {
  const over = (part: RangePartReader, changes: Partial<RangeRequest>): RangeResponse | Promise<RangeResponse> => part.read({ ...request, key: part.range.key, rangeEnd: part.range.rangeEnd, ...changes });
  if (request.countOnly === true) {
    let count = 0;
    for (const part of parts) count += (await over(part, {})).count;
    return { kvs: [], more: false, count };
  }
  const limit = request.limit !== undefined && request.limit > 0 ? request.limit : 0;
  const order = request.sortOrder ?? 'none';
  const target = request.sortTarget ?? 'key';
  const keyOrder = target === 'key';
  if (keyOrder && limit > 0 && !isFiltered(request)) {
    // In key order (either way) each part answers at most what is still wanted, plus one to learn
    // `more`; the parts past that only count.
    const ordered = order === 'descend' ? [...parts].reverse() : parts;
    const kvs: KeyValue[] = [];
    let count = 0;
    for (const part of ordered) {
      if (kvs.length > limit) {
        count += (await over(part, { countOnly: true, limit: 0 })).count;
        continue;
      }
      const answer = await over(part, { limit: limit + 1 - kvs.length });
      count += answer.count;
      kvs.push(...answer.kvs);
    }
    return { kvs: kvs.slice(0, limit), more: kvs.length > limit, count };
  }
  // Sorted by another target, filtered, or unlimited: every part's keys (values kept when the
  // sort reads them), sorted and cut as one store does.
  let all: KeyValue[] = [];
  let count = 0;
  for (const part of parts) {
    const answer = await over(part, { limit: 0, sortOrder: 'none', sortTarget: 'key', keysOnly: request.keysOnly === true && target !== 'value' });
    count += answer.count;
    all.push(...answer.kvs);
  }
  all = sortKeyValues(all, order, target);
  const more = limit > 0 && all.length > limit;
  if (more) all = all.slice(0, limit);
  if (request.keysOnly === true && target === 'value') all = all.map((kv) => ({ ...kv, value: EMPTY }));
  return { kvs: all, more, count };
}
