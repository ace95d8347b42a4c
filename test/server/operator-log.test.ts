/** The operator's log lines: start-up summary, membership changes, recovery, versions, line format. */
import { describe, expect, it } from 'vitest';
import { parseServerConfig } from '../../src/server/config.js';
import { formatId } from '../../src/cluster/index.js';
import { formatLogLine } from '../../src/server/logger.js';
import { mappedObjects } from '../../src/server/malloc-trim.js';
import { MembershipLog, RecoveryLog, allocatorLine, memberChanges, startKindOf, startupLines } from '../../src/server/operator-log.js';
import { dkvVersion, versionText } from '../../src/server/version.js';

const member = (id: number, name: string, isLearner = false) => ({ id, name, peerUrls: [`http://10.0.0.${id % 250}:2380`], isLearner });

describe('ids and line format', () => {
  it('prints ids in hex as etcd does, and every line with a time, a level and the member name', () => {
    expect(formatId(0x8e9e05c52164)).toBe('8e9e05c52164');
    expect(formatLogLine(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)), 'warn', 'n1', 'hello')).toBe('2026-01-02T03:04:05.006Z WARN n1: hello\n');
  });
});

describe('membership changes', () => {
  it('finds added, removed and promoted members and logs each once with id, name and peer URLs', () => {
    expect(memberChanges([member(1, 'a'), member(2, 'b', true)], [member(1, 'a'), member(2, 'b'), member(3, 'c', true)]).map((c) => [c.kind, c.member.id])).toEqual([
      ['promoted', 2],
      ['added', 3],
    ]);
    const lines: string[] = [];
    const log = new MembershipLog(0xabc, (line) => lines.push(line));
    log.changed([member(1, 'a'), member(2, 'b')], true);
    log.changed([]);
    log.changed([member(1, 'a'), member(2, 'b'), member(26, 'z', true)]);
    log.changed([member(1, 'a'), member(26, 'z')]);
    expect(lines).toEqual([
      'added member 1a "z" (learner, peer URLs http://10.0.0.26:2380) of cluster abc',
      'promoted member 1a "z" (voter, peer URLs http://10.0.0.26:2380) of cluster abc',
      'removed member 2 "b" (voter, peer URLs http://10.0.0.2:2380) of cluster abc',
    ]);
  });
});

describe('start-up lines', () => {
  const config = parseServerConfig(['--name=n1', '--data-dir=/data/n1', '--snapshot-count=500']);
  const empty = [{ shard: 0, lastIndex: 0, snapshotIndex: 0, term: 0, commit: 0 }];
  const stored = [{ shard: 1, lastIndex: 40, snapshotIndex: 10, term: 3, commit: 38 }];

  it('say bootstrap, join or restart', () => {
    expect(startKindOf(config, empty)).toBe('bootstrap');
    expect(startKindOf(parseServerConfig(['--initial-cluster-state=existing']), empty)).toBe('join');
    expect(startKindOf(config, stored)).toBe('restart');
  });

  it('give version, ids in hex, data dir, changed settings, URLs and what a restart recovered', () => {
    const facts = { config, memberId: 0x8e9e05c5, clusterId: 0xcdf8, recovered: stored, applied: [{ shard: 1, appliedIndex: 10, revision: 7 }], env: {}, mapped: [], trim: { available: true } as const };
    const logged = startupLines(facts);
    const lines = logged.map((line) => line.text);
    expect(lines[0]).toBe(
      `DKV ${dkvVersion()} (etcd API 3.5.0, Node ${process.version}) member 8e9e05c5 ("n1") of cluster cdf8: restarted from its data directory`,
    );
    expect(lines).toContain('data dir /data/n1');
    expect(lines).toContain('settings not at their defaults: --name=n1 (flag) --data-dir=/data/n1 (flag) --snapshot-count=500 (flag)');
    expect(lines).toContain('shard 1 stored: snapshot index 10, last log index 40, commit 38, term 3; applied index 10, revision 7 before replaying the log');
    expect(lines).toContain('client URLs: listen http://127.0.0.1:2379, advertise http://127.0.0.1:2379');
    expect(lines).toContain('peer URLs: listen http://127.0.0.1:2380, advertise http://127.0.0.1:2380');
    expect(lines).toContain("memory trim: glibc's malloc_trim after each memory settle and defragmentation");
    expect(startupLines({ ...facts, trim: { available: false, reason: 'not glibc' } }).map((line) => line.text)).toContain('memory trim: none (not glibc)');
    expect(logged.every((line) => line.level === 'info')).toBe(true);
    // jemalloc asked for and not loaded: the one line at warn level.
    const warned = startupLines({ ...facts, env: { DKV_ALLOCATOR: 'jemalloc' } }).filter((line) => line.level === 'warn');
    expect(warned.map((line) => line.text)).toEqual([expect.stringContaining('DKV_ALLOCATOR=jemalloc found no libjemalloc.so.2')]);
  });

  it('report once when a restarted shard has applied its stored commit index', () => {
    const lines: string[] = [];
    const log = new RecoveryLog(stored, () => 9, (line) => lines.push(line));
    log.entryApplied(1, 37);
    log.entryApplied(1, 38);
    log.entryApplied(1, 39);
    expect(lines).toEqual(['shard 1 recovered: applied index 38, revision 9 (the commit index it stored)']);
  });
});

describe('--version', () => {
  it('prints DKV\'s version from package.json, the etcd API version, Node\'s version', () => {
    const text = versionText();
    expect(text).toMatch(/^DKV Version: \d+\.\d+\.\d+\netcd API Version: 3\.5\.0\nGit SHA: \S+/);
    expect(text).toContain(`Node Version: ${process.version}\n`);
  });
});

describe('allocatorLine', () => {
  it('names jemalloc when mapped, warns when asked for and missing or for an unknown value, and says how to ask otherwise', () => {
    const jemalloc = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';
    const libc = ['/usr/lib/x86_64-linux-gnu/libc.so.6'];
    expect(allocatorLine({ LD_PRELOAD: jemalloc, MALLOC_CONF: 'narenas:2' }, [...libc, jemalloc])).toEqual({ level: 'info', text: `memory allocator: jemalloc (${jemalloc}, MALLOC_CONF=narenas:2)` });
    expect(allocatorLine({}, [jemalloc])).toEqual({ level: 'info', text: `memory allocator: jemalloc (${jemalloc}, MALLOC_CONF=(its defaults))` });
    // jemalloc loaded by a caller's LD_PRELOAD against what DKV_ALLOCATOR says: warned.
    expect(allocatorLine({ DKV_ALLOCATOR: 'glibc', LD_PRELOAD: jemalloc }, [jemalloc])).toEqual({
      level: 'warn',
      text: `memory allocator: jemalloc (${jemalloc}, MALLOC_CONF=(its defaults)); DKV_ALLOCATOR=glibc was not followed: LD_PRELOAD loads jemalloc`,
    });
    expect(allocatorLine({ DKV_ALLOCATOR: 'jemaloc', LD_PRELOAD: jemalloc }, [jemalloc])).toEqual({
      level: 'warn',
      text: `memory allocator: jemalloc (${jemalloc}, MALLOC_CONF=(its defaults)); DKV_ALLOCATOR=jemaloc is neither jemalloc nor glibc, and was ignored`,
    });
    // Named but not loaded (another architecture's, say): not claimed.
    expect(allocatorLine({ LD_PRELOAD: jemalloc, DKV_ALLOCATOR: 'jemalloc' }, libc)).toEqual({
      level: 'warn',
      text: `memory allocator: the C library's malloc or one LD_PRELOAD=${jemalloc} loads; DKV_ALLOCATOR=jemalloc found no libjemalloc.so.2 (Debian: libjemalloc2), or LD_PRELOAD was set already`,
    });
    expect(allocatorLine({ DKV_ALLOCATOR: 'jemaloc' }, libc)).toEqual({
      level: 'warn',
      text: "memory allocator: the C library's malloc; DKV_ALLOCATOR=jemaloc is neither jemalloc nor glibc, and was ignored",
    });
    expect(allocatorLine({ DKV_ALLOCATOR: 'glibc' }, libc)).toEqual({ level: 'info', text: "memory allocator: the C library's malloc (DKV_ALLOCATOR=jemalloc for jemalloc)" });
    expect(allocatorLine({}, libc)).toEqual({ level: 'info', text: "memory allocator: the C library's malloc (DKV_ALLOCATOR=jemalloc for jemalloc)" });
  });

  it('reads the mapped shared objects from a maps text', () => {
    const maps = [
      '7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
      '7f01-7f02 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
      '7f02-7f03 rw-p 00000000 00:00 0 [heap]',
      '5600-5601 r-xp 00000000 08:01 2 /usr/bin/node',
    ].join('\n');
    expect(mappedObjects(() => maps)).toEqual(['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2']);
    expect(mappedObjects(() => {
      throw new Error('no /proc');
    })).toEqual([]);
  });
});
