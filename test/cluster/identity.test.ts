/**
 * Golden values of the member and cluster ids. Data directories depend on them (every member id
 * is in every shard's log, snapshot and member.json): a change here breaks every existing
 * cluster, so these values may never be updated to make a test pass.
 */
import { describe, expect, it } from 'vitest';
import { addedMemberIdOf, clusterIdOf, formatId, memberIdOf } from '../../src/cluster/index.js';

describe('member and cluster identity', () => {
  it('keeps the ids existing data directories hold', () => {
    expect(formatId(memberIdOf(['http://127.0.0.1:2380'], 'dkv-cluster'))).toBe('1d4b15bfe258c6');
    expect(formatId(memberIdOf(['http://127.0.0.1:2390'], 'dkv-dev'))).toBe('25bd161598936');
    expect(formatId(memberIdOf(['http://127.0.0.1:2381', 'http://10.0.0.1:2380'], 'tok'))).toBe('259f294d11c23');
    expect(formatId(clusterIdOf('dkv-cluster'))).toBe('c71be31ec9af0');
    expect(formatId(clusterIdOf('tok'))).toBe('18c8f97464d94e');
  });

  it('a member id depends on its peer URLs in any order and on the token, nothing else', () => {
    const id = memberIdOf(['http://10.0.0.1:2380', 'http://10.0.1.1:2380'], 'tok');
    expect(memberIdOf(['http://10.0.1.1:2380', 'http://10.0.0.1:2380'], 'tok')).toBe(id);
    expect(memberIdOf([{ href: 'http://10.0.0.1:2380' }, 'http://10.0.1.1:2380'], 'tok')).toBe(id);
    expect(memberIdOf(['http://10.0.0.1:2380'], 'tok')).not.toBe(id);
    expect(memberIdOf(['http://10.0.0.1:2380', 'http://10.0.1.1:2380'], 'tok2')).not.toBe(id);
  });

  it('ids are positive safe integers and distinct across many members', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const id = memberIdOf([`http://10.0.${i % 256}.${1 + Math.floor(i / 256)}:2380`], 'dkv-cluster');
      expect(Number.isSafeInteger(id) && id > 0).toBe(true);
      seen.add(id);
    }
    expect(seen.size).toBe(2000);
  });

  it('formats ids as etcd does and refuses what is not an id', () => {
    expect(formatId(0x8e9e05c52164)).toBe('8e9e05c52164');
    expect(formatId(2 ** 53 - 1)).toBe('1fffffffffffff');
    expect(() => formatId(0)).toThrow(TypeError);
    expect(() => formatId(2 ** 53)).toThrow(TypeError);
  });

  it('an added member takes the founding id when free, and distinct fresh ids on later attempts', () => {
    const urls = ['http://10.0.0.3:2380'];
    expect(addedMemberIdOf(urls, 'tok', 0)).toBe(memberIdOf(urls, 'tok'));
    const ids = new Set([0, 1, 2, 3, 4].map((attempt) => addedMemberIdOf(urls, 'tok', attempt)));
    expect(ids.size).toBe(5);
    for (const id of ids) expect(Number.isSafeInteger(id) && id > 0).toBe(true);
    expect(addedMemberIdOf(urls, 'tok', 1)).toBe(addedMemberIdOf([...urls], 'tok', 1));
  });
});
