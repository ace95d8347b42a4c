/**
 * Who may open a link on the peer port: the decisions as pure functions, so that they are tested
 * without sockets. The transport asks them when an accepted link says hello (membership and
 * address) and when a TLS handshake ends (certificate names).
 *
 * Membership is the transport's peer set, which the host keeps equal to the meta shard's members
 * (voters and learners, from the moment `member add` is applied: etcd's operators add a member,
 * then start it, so a new member's first hello finds it listed) plus members a cluster query
 * named that the meta shard has not recorded yet. Nothing here reads a clock or a socket.
 */
import * as tls from 'node:tls';

/**
 * Why a link was refused; the label of `dkv_peer_refused_total{reason}`. Stable: dashboards and
 * alerts match on it; never rename one, only add.
 *
 * - `not_member`: the hello names a member this node does not know (or this node itself).
 * - `removed`: the hello names a member that was removed from the cluster.
 * - `address`: the link comes from an address that is none of the named member's peer URL hosts.
 * - `certificate`: the peer's TLS certificate does not match `--peer-cert-allowed-cn` /
 *   `--peer-cert-allowed-hostname`.
 * - `cluster_mismatch`: the hello is for another cluster id or addressed to another member.
 * - `protocol`: the hello speaks another protocol version.
 */
export type PeerRefusalReason = 'not_member' | 'removed' | 'address' | 'certificate' | 'cluster_mismatch' | 'protocol';

export const peerRefusalReasons: readonly PeerRefusalReason[] = ['not_member', 'removed', 'address', 'certificate', 'cluster_mismatch', 'protocol'];

export type Admission = { readonly admitted: true; readonly byName: boolean } | { readonly admitted: false; readonly reason: PeerRefusalReason; readonly detail: string };

/** What the accepting node knows when a link says hello. */
export interface AdmissionView {
  readonly localId: number;
  /** Whether `id` was removed from the cluster. */
  isRemoved(id: number): boolean;
  /** The hosts of member `id`'s peer URLs, or undefined when `id` is not a member this node talks to. */
  memberHosts(id: number): readonly string[] | undefined;
}

const idHex = (id: number): string => id.toString(16);

/**
 * Whether a link from `remoteAddress` (the socket's address: an IP, IPv4 possibly mapped into
 * IPv6) may speak for member `fromId`. Membership first (removed, then unknown), then the address.
 * `byName` says the member's URLs name it by host name only, so the address was not compared.
 */
export function admitPeer(view: AdmissionView, fromId: number, remoteAddress: string | undefined): Admission {
  if (fromId === view.localId) return refused('not_member', `peer claims to be this member (${fromId})`);
  if (view.isRemoved(fromId)) return refused('removed', `member ${idHex(fromId)} was removed from the cluster`);
  const hosts = view.memberHosts(fromId);
  if (hosts === undefined) return refused('not_member', `member ${idHex(fromId)} is not a configured member of this node`);
  const match = addressMatch(remoteAddress, hosts);
  if (match === 'mismatch') {
    return refused('address', `member ${idHex(fromId)}'s peer URLs are on ${hosts.join(', ')}, but the link comes from ${remoteAddress ?? 'an unknown address'}`);
  }
  return { admitted: true, byName: match === 'by-name' };
}

function refused(reason: PeerRefusalReason, detail: string): Admission {
  return { admitted: false, reason, detail };
}

/**
 * Compares a link's remote address with a member's peer URL hosts:
 *
 * - an IP host matches the same address (IPv4-mapped IPv6 and other spellings normalised);
 * - a loopback host (127.0.0.0/8, ::1, `localhost`) matches any loopback address: a member
 *   advertised on loopback runs on this machine, whose processes may all connect from 127.0.0.1
 *   whatever 127.x address they advertise, and anyone who can reach a loopback port is local
 *   anyway, so comparing exact loopback addresses would refuse real members and keep no one out;
 * - a host name is accepted by name ('by-name'), unresolved. Resolving it at every hello would
 *   make a member's reconnect depend on DNS answering (and on the answer naming the address the
 *   member dials from, which NAT and multi-homed hosts break), and would let a stranger's hellos
 *   occupy the resolver. etcd itself checks no addresses; what identifies a member named by host
 *   name is its certificate: use peer TLS with `--peer-client-cert-auth` and
 *   `--peer-cert-allowed-hostname` (or `-cn`) to hold it to that name.
 *
 * 'match' as soon as one host matches; 'by-name' when none does but some host is a name.
 */
export function addressMatch(remoteAddress: string | undefined, hosts: readonly string[]): 'match' | 'mismatch' | 'by-name' {
  const remote = remoteAddress === undefined ? undefined : canonicalIp(remoteAddress);
  let byName = false;
  for (const host of hosts) {
    const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
    if (bare === 'localhost') {
      if (remote !== undefined && isLoopback(remote)) return 'match';
      continue;
    }
    const ip = canonicalIp(bare);
    if (ip === undefined) {
      byName = true;
      continue;
    }
    if (remote === undefined) continue;
    if (ip === remote || (isLoopback(ip) && isLoopback(remote))) return 'match';
  }
  return byName ? 'by-name' : 'mismatch';
}

/** The canonical spelling of an IP address (IPv4-mapped IPv6 as IPv4), or undefined for a host name. */
export function canonicalIp(address: string): string | undefined {
  const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  let canonical: string;
  if (/^[0-9.]+$/.test(bare)) {
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(bare) || bare.split('.').some((part) => Number(part) > 255)) return undefined;
    canonical = bare.split('.').map(Number).join('.');
    return canonical;
  }
  if (!bare.includes(':')) return undefined;
  try {
    // The URL parser writes IPv6 in its canonical compressed form (RFC 5952).
    canonical = new URL(`http://[${bare}]/`).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped !== undefined && mapped !== null) {
    const high = parseInt(mapped[1] ?? '0', 16);
    const low = parseInt(mapped[2] ?? '0', 16);
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  return canonical;
}

function isLoopback(canonical: string): boolean {
  return canonical === '::1' || /^127\./.test(canonical);
}

/** `--peer-cert-allowed-cn` or `--peer-cert-allowed-hostname` (etcd allows one of them, not both). */
export type CertificateRule = { readonly commonName: string } | { readonly hostname: string };

/** The parts of a certificate the rule reads (as `tls.PeerCertificate` has them). */
export interface CertificateNames {
  readonly subject?: { readonly CN?: string | string[] } | undefined;
  /** 'DNS:a.example, IP Address:10.0.0.1', as Node writes it. */
  readonly subjectaltname?: string | undefined;
}

/**
 * Why a certificate fails the rule, or undefined when it passes, as etcd's VerifyPeerCertificate:
 * the CN must equal the allowed one exactly; for a hostname, the certificate's subject alternative
 * names must match it (wildcards as in TLS; an IP hostname matches IP SANs). Unlike Node's
 * server identity check, the CN is never taken for a hostname (Go, and so etcd, ignores it).
 */
export function certificateProblem(certificate: CertificateNames | undefined, rule: CertificateRule): string | undefined {
  if (certificate === undefined || certificate.subject === undefined) return 'no certificate';
  const cn = certificate.subject.CN;
  const commonNames = cn === undefined ? [] : Array.isArray(cn) ? cn : [cn];
  if ('commonName' in rule) {
    if (commonNames.includes(rule.commonName)) return undefined;
    return `certificate CN ${commonNames.length === 0 ? '(none)' : commonNames.join(', ')} is not the allowed CN ${rule.commonName}`;
  }
  const altNames = certificate.subjectaltname ?? '';
  const mismatch = altNames === '' ? new Error('no subject alternative names') : tls.checkServerIdentity(rule.hostname, { subject: {}, subjectaltname: altNames } as tls.PeerCertificate);
  if (mismatch === undefined) return undefined;
  return `certificate names (${altNames === '' ? 'none' : altNames}) do not match the allowed hostname ${rule.hostname}`;
}
