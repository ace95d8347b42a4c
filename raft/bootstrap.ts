/**
 * Bootstrapping a new group the way etcd does: the initial members are added by configuration
 * change entries at the head of the log, committed from the start. Every node (including one that
 * joins later and replays the log) builds the same configuration by applying them.
 */
import { encodeConfChange } from './codec.js';
import type { Entry, HardState } from './types.js';

export function bootstrapEntries(voters: readonly number[]): { entries: Entry[]; hardState: HardState } {
  if (voters.length === 0) throw new TypeError('a group needs at least one voter');
  const seen = new Set<number>();
  const entries = voters.map((id, i): Entry => {
    if (!Number.isSafeInteger(id) || id <= 0) throw new TypeError(`invalid node id ${id}`);
    if (seen.has(id)) throw new TypeError(`duplicate node id ${id}`);
    seen.add(id);
    return {
      term: 1,
      index: i + 1,
      type: 'conf-change',
      data: encodeConfChange({ transition: 'auto', changes: [{ type: 'add-voter', nodeId: id }], context: new Uint8Array(0) }),
    };
  });
  return { entries, hardState: { term: 1, vote: 0, commit: entries.length } };
}
