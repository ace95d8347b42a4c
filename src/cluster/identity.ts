/**
 * Member and cluster ids: the one scheme every part of DKV uses. Data directories depend on these
 * values (every member's id is in every shard's Raft log and snapshot, and member.json records
 * them), so they never change; `test/cluster/identity.test.ts` pins them.
 *
 * - A founding member's id depends only on its peer URLs (in any order) and the cluster token,
 *   so every member works out every other's from --initial-cluster.
 * - MemberAdd gives the same id when that id is free, and a fresh one (`addedMemberIdOf` with the
 *   next attempt number) when a member with those peer URLs had it and was removed: removed ids
 *   never come back, so a replacement on the same peer URL is a new member, as in etcd. A member
 *   started with --initial-cluster-state existing learns its id from the cluster (it asks a
 *   peer for the member list and finds itself by its peer URLs).
 * - The cluster id depends only on the token, so a member that joins later knows it without
 *   asking; give every cluster its own --initial-cluster-token.
 * - Ids are Raft node ids: positive integers below 2^53, printed in lower-case hex as etcd does.
 */
import { createHash } from 'node:crypto';

export interface PeerUrlLike {
  readonly href: string;
}

/** A positive id below 2^53 from a digest of `parts`. */
function idFromHash(parts: readonly unknown[]): number {
  const digest = createHash('sha256').update(JSON.stringify(parts)).digest();
  const id = Number(digest.readBigUInt64BE(0) >> 11n);
  // Zero means "no node" in Raft; a hash of zero (odds 2^-53) takes the next id.
  return id === 0 ? 1 : id;
}

/** A member's id, from its peer URLs and the cluster token. */
export function memberIdOf(peerUrls: ReadonlyArray<string | PeerUrlLike>, clusterToken: string): number {
  const urls = peerUrls.map((url) => (typeof url === 'string' ? url : url.href)).sort();
  // The name slot is empty: a member's name may change, its id may not.
  return idFromHash(['dkv-member-v1', '', urls, clusterToken]);
}

/**
 * The id MemberAdd gives on its `attempt`-th try (0 gives `memberIdOf`'s): it takes the first
 * attempt whose id is neither in use nor removed.
 */
export function addedMemberIdOf(peerUrls: ReadonlyArray<string | PeerUrlLike>, clusterToken: string, attempt: number): number {
  if (attempt === 0) return memberIdOf(peerUrls, clusterToken);
  const urls = peerUrls.map((url) => (typeof url === 'string' ? url : url.href)).sort();
  return idFromHash(['dkv-member-v1', '', urls, clusterToken, attempt]);
}

/** The cluster's id, from its token. */
export function clusterIdOf(clusterToken: string): number {
  return idFromHash(['dkv-cluster-v1', [], clusterToken]);
}

export function assertId(id: number): void {
  if (!Number.isSafeInteger(id) || id <= 0) throw new TypeError(`an id must be a positive safe integer, got ${id}`);
}

/** Lower-case hex without padding, as etcd prints member and cluster ids. */
export function formatId(id: number): string {
  assertId(id);
  return id.toString(16);
}
