/**
 * The change log against a plain array of its changes: appends, compaction's drops from the
 * front, and `retainAt` (the changes at the compact revision that lost their record let go),
 * across chunk boundaries (changeLogChunkEntries changes a chunk) and the chunk read part-way.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChangeLog } from '../../storage/mvcc/change-log.js';
import { changeLogChunkEntries } from '../../storage/mvcc/limits.js';

interface Change {
  readonly revision: number;
  readonly sub: number;
  readonly key: string;
}

const keyOf = (revision: number, sub: number): string => `k${revision}.${sub}`;

function contents(log: ChangeLog, from = 0, to = Number.MAX_SAFE_INTEGER): Change[] {
  const out: Change[] = [];
  log.forEach(from, to, (revision, sub, key) => {
    out.push({ revision, sub, key: Buffer.from(key).toString() });
  });
  return out;
}

/** Appends `count` changes at `revision` to the log and the model. */
function write(log: ChangeLog, model: Change[], revision: number, count: number): void {
  for (let sub = 0; sub < count; sub++) {
    log.append(revision, sub, Buffer.from(keyOf(revision, sub)));
    model.push({ revision, sub, key: keyOf(revision, sub) });
  }
}

describe('ChangeLog.retainAt', () => {
  it('keeps what it is told of the oldest revision, whatever the chunks, and appends go on after', () => {
    // Revisions of up to ~1.5 chunks each, so the revision kept from and the one after it cross
    // chunk boundaries and start part-way into a chunk.
    const op = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), count: fc.integer({ min: 1, max: Math.floor(changeLogChunkEntries * 1.5) }) }),
      fc.record({ kind: fc.constant('compact' as const), back: fc.nat(4), keepEvery: fc.integer({ min: 0, max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 12 }), (ops) => {
        const log = new ChangeLog();
        let model: Change[] = [];
        let revision = 0;
        let floor = 0;
        for (const step of ops) {
          if (step.kind === 'write') {
            write(log, model, ++revision, step.count);
            continue;
          }
          // Compact at a revision behind the head: drop what is before it, keep every
          // keepEvery-th change at it (0: none).
          const at = Math.max(floor + 1, revision - step.back);
          if (at > revision) continue;
          floor = at;
          log.dropThrough(at - 1, () => {});
          const keep = (sub: number): boolean => step.keepEvery > 0 && sub % step.keepEvery === 0;
          log.retainAt(at, (sub, key) => {
            expect(Buffer.from(key).toString()).toBe(keyOf(at, sub));
            return keep(sub);
          });
          model = model.filter((c) => c.revision > at || (c.revision === at && keep(c.sub)));
          expect(log.length).toBe(model.length);
          expect(contents(log)).toEqual(model);
        }
        expect(contents(log)).toEqual(model);
        // Reads from any revision start at its first change.
        for (let from = floor; from <= revision + 1; from++) expect(contents(log, from, from)).toEqual(model.filter((c) => c.revision === from));
        // The log goes on: appends after the rebuilt front, then a drop of everything.
        write(log, model, ++revision, 3);
        expect(contents(log)).toEqual(model);
        log.dropThrough(revision, () => {});
        expect(log.length).toBe(0);
        expect(log.bytes).toBe(0);
      }),
      { numRuns: 60 },
    );
  });

  it('rebuilds a front of several chunks before a chunk read part-way, in order', () => {
    const log = new ChangeLog();
    let model: Change[] = [];
    // Revision 1 ends part-way into a chunk; revision 2 (kept in part) spans three chunks and
    // ends part-way into a fourth, which revision 3 fills on.
    write(log, model, 1, 100);
    write(log, model, 2, changeLogChunkEntries * 3);
    write(log, model, 3, changeLogChunkEntries + 7);
    log.dropThrough(1, () => {});
    const keep = (sub: number): boolean => sub % 3 !== 0;
    log.retainAt(2, (sub) => keep(sub));
    model = model.filter((c) => c.revision === 3 || (c.revision === 2 && keep(c.sub)));
    expect(log.length).toBe(model.length);
    expect(contents(log)).toEqual(model);
    expect(contents(log, 3, 3)).toEqual(model.filter((c) => c.revision === 3));
    write(log, model, 4, 5);
    expect(contents(log, 2)).toEqual(model);
  });

  it('frees the chunks of a revision it lets go entirely', () => {
    const log = new ChangeLog();
    const model: Change[] = [];
    write(log, model, 1, changeLogChunkEntries * 3);
    write(log, model, 2, 10);
    const full = log.bytes;
    log.retainAt(1, () => false);
    expect(log.length).toBe(10);
    // The three chunks of revision 1 are gone; revision 2's ten changes sit in one chunk.
    expect(log.bytes).toBeLessThan(full / 3);
    expect(contents(log)).toEqual(model.slice(changeLogChunkEntries * 3));
  });
});
