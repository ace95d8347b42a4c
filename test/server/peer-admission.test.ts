/**
 * Who may open a link on the peer port, as pure decisions: membership, the link's address against
 * the member's peer URL hosts, and certificate names (admission.ts).
 */
import { describe, expect, it } from 'vitest';
import { addressMatch, admitPeer, canonicalIp, certificateProblem, type AdmissionView } from '../../src/server/peer/index.js';

function view(members: Record<number, readonly string[]>, removed: readonly number[] = [], localId = 1): AdmissionView {
  return {
    localId,
    isRemoved: (id) => removed.includes(id),
    memberHosts: (id) => members[id],
  };
}

describe('admitPeer', () => {
  const cluster = view({ 2: ['10.0.0.2'], 3: ['10.0.0.3', 'fd00::3'], 4: ['node-4.example'] }, [9]);

  it('admits a member from one of its peer URL hosts', () => {
    expect(admitPeer(cluster, 2, '10.0.0.2')).toEqual({ admitted: true, byName: false });
    expect(admitPeer(cluster, 3, 'fd00:0:0::3')).toEqual({ admitted: true, byName: false });
    expect(admitPeer(cluster, 3, '::ffff:10.0.0.3')).toEqual({ admitted: true, byName: false });
  });

  it('refuses a member speaking from another address, naming both', () => {
    const admission = admitPeer(cluster, 2, '10.0.0.3');
    expect(admission).toMatchObject({ admitted: false, reason: 'address' });
    expect(admission.admitted ? '' : admission.detail).toMatch(/10\.0\.0\.2.*10\.0\.0\.3/);
    expect(admitPeer(cluster, 2, undefined)).toMatchObject({ admitted: false, reason: 'address' });
  });

  it('refuses ids that are not members, this node itself, and removed members (removal first)', () => {
    expect(admitPeer(cluster, 5, '10.0.0.2')).toMatchObject({ admitted: false, reason: 'not_member' });
    expect(admitPeer(cluster, 1, '10.0.0.2')).toMatchObject({ admitted: false, reason: 'not_member' });
    expect(admitPeer(cluster, 9, '10.0.0.9')).toMatchObject({ admitted: false, reason: 'removed' });
    // A removed id still in the peer set (the host has not caught up) is refused as removed.
    expect(admitPeer(view({ 2: ['10.0.0.2'] }, [2]), 2, '10.0.0.2')).toMatchObject({ admitted: false, reason: 'removed' });
  });

  it('accepts a member named by host name by name, without resolving it', () => {
    expect(admitPeer(cluster, 4, '192.0.2.77')).toEqual({ admitted: true, byName: true });
  });

  it('follows the member set it is given: a member added is admitted, one removed from the set is not', () => {
    const members: Record<number, readonly string[]> = { 2: ['10.0.0.2'] };
    const live = view(members);
    expect(admitPeer(live, 7, '10.0.0.7')).toMatchObject({ admitted: false, reason: 'not_member' });
    members[7] = ['10.0.0.7'];
    expect(admitPeer(live, 7, '10.0.0.7')).toMatchObject({ admitted: true });
    delete members[7];
    expect(admitPeer(live, 7, '10.0.0.7')).toMatchObject({ admitted: false, reason: 'not_member' });
  });
});

describe('addressMatch', () => {
  it('treats every loopback address as one host: loopback clusters differ by port only', () => {
    expect(addressMatch('127.0.0.1', ['127.0.0.1'])).toBe('match');
    expect(addressMatch('127.0.0.1', ['127.0.0.2'])).toBe('match');
    expect(addressMatch('::1', ['127.0.0.1'])).toBe('match');
    expect(addressMatch('::ffff:127.0.0.1', ['[::1]'])).toBe('match');
    expect(addressMatch('127.0.0.1', ['localhost'])).toBe('match');
    expect(addressMatch('127.0.0.1', ['LocalHost'])).toBe('match');
  });

  it('does not let a loopback link speak for a member on another host, nor the other way round', () => {
    expect(addressMatch('127.0.0.1', ['10.0.0.2'])).toBe('mismatch');
    expect(addressMatch('10.0.0.2', ['127.0.0.1'])).toBe('mismatch');
    expect(addressMatch('10.0.0.2', ['localhost'])).toBe('mismatch');
  });

  it('matches any of several hosts, and says by-name only when no IP matched', () => {
    expect(addressMatch('10.0.0.5', ['10.0.0.4', '10.0.0.5'])).toBe('match');
    expect(addressMatch('10.0.0.6', ['10.0.0.4', 'db.example'])).toBe('by-name');
    expect(addressMatch('10.0.0.4', ['db.example', '10.0.0.4'])).toBe('match');
    expect(addressMatch(undefined, ['db.example'])).toBe('by-name');
    expect(addressMatch(undefined, ['10.0.0.4'])).toBe('mismatch');
  });
});

describe('canonicalIp', () => {
  it('spells an address one way', () => {
    expect(canonicalIp('10.000.0.1')).toBe('10.0.0.1');
    expect(canonicalIp('[FD00:0000::0001]')).toBe('fd00::1');
    expect(canonicalIp('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(canonicalIp('fe80::1%eth0')).toBe('fe80::1');
  });

  it('says undefined for host names and malformed addresses', () => {
    expect(canonicalIp('db.example')).toBeUndefined();
    expect(canonicalIp('300.1.1.1')).toBeUndefined();
    expect(canonicalIp('1.2.3')).toBeUndefined();
    expect(canonicalIp('::g')).toBeUndefined();
  });
});

describe('certificateProblem', () => {
  const cert = { subject: { CN: 'member-a' }, subjectaltname: 'DNS:a.peers.example, DNS:*.wild.example, IP Address:10.0.0.1' };

  it('allows the exact CN only', () => {
    expect(certificateProblem(cert, { commonName: 'member-a' })).toBeUndefined();
    expect(certificateProblem(cert, { commonName: 'member-b' })).toMatch(/CN member-a is not the allowed CN member-b/);
    expect(certificateProblem(cert, { commonName: 'Member-A' })).toBeDefined();
  });

  it('matches a hostname against the subject alternative names, never the CN', () => {
    expect(certificateProblem(cert, { hostname: 'a.peers.example' })).toBeUndefined();
    expect(certificateProblem(cert, { hostname: 'x.wild.example' })).toBeUndefined();
    expect(certificateProblem(cert, { hostname: '10.0.0.1' })).toBeUndefined();
    expect(certificateProblem(cert, { hostname: 'b.peers.example' })).toMatch(/do not match the allowed hostname/);
    expect(certificateProblem({ subject: { CN: 'a.peers.example' } }, { hostname: 'a.peers.example' })).toBeDefined();
  });

  it('refuses a missing certificate', () => {
    expect(certificateProblem(undefined, { commonName: 'member-a' })).toBe('no certificate');
    expect(certificateProblem({}, { commonName: 'member-a' })).toBe('no certificate');
  });
});
