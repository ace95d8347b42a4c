/**
 * The `election` workload's names and wire shapes. Candidates campaign on one etcd election
 * (`v3electionpb.Election`: Campaign with a lease they keep alive, Proclaim, Resign) while
 * observers hold Observe streams. The loop that runs it is real mode's
 * (`real/election-clients.ts`); what is checked is `check/election.ts` plus the `lock` model.
 */
import type { WireCampaignRequest, WireLeaderKey, WireLeaderRequest, WireProclaimRequest, WireResignRequest } from '../../src/etcd-proto.js';
import { errorParts } from './errors.js';
import { etcdKey } from './etcd.js';

/** The election's name in the history (the lock model's partition). */
export const electionName = 'E';

/** etcd's (and DKV's) refusal of a Proclaim or Campaign whose key is not (or no longer) the leader's. */
export const notLeaderMessage = 'election: not leader';

export interface ElectionKeys {
  /** The etcd election name. */
  readonly name: Uint8Array;
  /** Its session keys' prefix (`name/`, then the lease id in hex): the range the check reads. */
  readonly prefix: string;
}

export function electionKeys(keyPrefix: string): ElectionKeys {
  const name = etcdKey(keyPrefix, 'election');
  return { name, prefix: `${new TextDecoder().decode(name)}/` };
}

/** A campaign's or proclaim's value: unique in the run, naming its candidate. */
export function electionValue(process: number, seq: number): string {
  return `p${process}-${seq}`;
}

/** `lease` as the decimal string it came in (lease ids use all 63 bits: not a safe JS number). */
export function campaignRequest(keys: ElectionKeys, lease: string, value: string): WireCampaignRequest {
  return { name: keys.name, lease, value: new TextEncoder().encode(value) };
}

export function leaderRequest(keys: ElectionKeys): WireLeaderRequest {
  return { name: keys.name };
}

export function proclaimRequest(leader: WireLeaderKey, value: string): WireProclaimRequest {
  return { leader, value: new TextEncoder().encode(value) };
}

export function resignRequest(leader: WireLeaderKey): WireResignRequest {
  return { leader };
}

/**
 * Whether a Campaign or Proclaim was refused because its key does not lead: etcd's Proclaim is a
 * txn whose compare (the key's create revision) failed, DKV's the same; a DKV Campaign whose key
 * vanished while it waited leaves the queue first. Either way nothing was written.
 */
export function isNotLeader(error: unknown): boolean {
  return errorParts(error).message.includes(notLeaderMessage);
}
