/** The pure parts of the data commands: etcdctl's formats and the flag suggestion. */
import { describe, expect, it } from 'vitest';
import { UsageError, closest, durationOption, editDistance, parseCommand } from '../../src/cli/args.js';
import { argify, keyRange, parseCompare } from '../../src/cli/kv.js';
import { JsonNumber, goDuration, goJson, humanBytes, idHex, renderTable } from '../../src/cli/output.js';

describe('etcdctl formats', () => {
  it('humanBytes is go-humanize Bytes (halfway rounds to even, as Go %.0f)', () => {
    const cases: Array<[number, string]> = [
      [0, '0 B'],
      [9, '9 B'],
      [10, '10 B'],
      [999, '999 B'],
      [1000, '1.0 kB'],
      [3100, '3.1 kB'],
      [20480, '20 kB'],
      [20500, '20 kB'],
      [21500, '22 kB'],
      [1_234_567, '1.2 MB'],
      [123_456_789, '124 MB'], // 123.5 rounds to even
    ];
    for (const [size, text] of cases) expect(humanBytes(size), String(size)).toBe(text);
  });

  it('goDuration is Go time.Duration String', () => {
    expect(goDuration(3_668_066n)).toBe('3.668066ms');
    expect(goDuration(2_000_000n)).toBe('2ms');
    expect(goDuration(850_000n)).toBe('850µs');
    expect(goDuration(1_500_000_000n)).toBe('1.5s');
    expect(goDuration(999n)).toBe('999ns');
  });

  it('renderTable draws tablewriter boxes: headers centred, cells right-aligned', () => {
    expect(renderTable(['ID', 'STATUS', 'ERRORS'], [['8e9e05c52164694d', 'started', '']])).toBe(
      [
        '+------------------+---------+--------+',
        '|        ID        | STATUS  | ERRORS |',
        '+------------------+---------+--------+',
        '| 8e9e05c52164694d | started |        |',
        '+------------------+---------+--------+',
        '',
      ].join('\n'),
    );
  });

  it('goJson writes int64 exactly, bytes as base64, Go escapes, no undefined fields', () => {
    const value = { id: new JsonNumber('15875391935852295136'), key: Buffer.from('foo'), gone: undefined, text: '<a&b>', list: [true] };
    expect(goJson(value)).toBe('{"id":15875391935852295136,"key":"Zm9v","text":"\\u003ca\\u0026b\\u003e","list":[true]}');
  });

  it('idHex prints a negative int64 as its unsigned hex, as %x of a uint64', () => {
    expect(idHex('-1')).toBe('ffffffffffffffff');
    expect(idHex('7383792418829112008')).toBe('667880157b8812c8');
  });
});

describe('flags', () => {
  it('suggests the nearest flag for a typo, nothing for a stranger', () => {
    expect(editDistance('prfix', 'prefix')).toBe(1);
    expect(editDistance('perfix', 'prefix')).toBe(1);
    expect(closest('--prfix', ['--prefix', '--from-key', '--rev'])).toBe('--prefix');
    expect(closest('--zzzzzz', ['--prefix', '--from-key', '--rev'])).toBeUndefined();
    expect(() => parseCommand(['--prfix'], { prefix: { type: 'boolean' } })).toThrow(new UsageError('unknown flag --prfix (did you mean --prefix?)'));
    expect(() => parseCommand(['--zzzzzz'], { prefix: { type: 'boolean' } })).toThrow(new UsageError('unknown flag --zzzzzz'));
  });

  it('reads Go durations for --command-timeout', () => {
    expect(durationOption('5s', 'command-timeout', 1)).toBe(5000);
    expect(durationOption('1m30s', 'command-timeout', 1)).toBe(90_000);
    expect(durationOption('250ms', 'command-timeout', 1)).toBe(250);
    expect(durationOption(undefined, 'command-timeout', 7)).toBe(7);
    expect(() => durationOption('5', 'command-timeout', 1)).toThrow(UsageError);
    expect(() => durationOption('0s', 'command-timeout', 1)).toThrow(UsageError);
  });
});

describe('txn syntax and key ranges', () => {
  it('parses etcdctl compares', () => {
    expect(parseCompare('value("k") = "v"')).toEqual({ key: Buffer.from('k'), target: 'VALUE', result: 'EQUAL', value: Buffer.from('v') });
    expect(parseCompare('mod("a b") > "3"')).toEqual({ key: Buffer.from('a b'), target: 'MOD', result: 'GREATER', mod_revision: '3' });
    expect(parseCompare('ver("k") != "0"')).toMatchObject({ target: 'VERSION', result: 'NOT_EQUAL', version: '0' });
    expect(parseCompare('lease("k") = "ff"')).toMatchObject({ target: 'LEASE', lease: '255' });
    expect(() => parseCompare('size("k") = "1"')).toThrow('unknown target size');
    expect(() => parseCompare('mod("k") = "x"')).toThrow(UsageError);
  });

  it('splits request lines as etcdctl argify does', () => {
    expect(argify('put k "a b" --prev-kv')).toEqual(['put', 'k', 'a b', '--prev-kv']);
    expect(argify('put "q\\"uote" "\\n"')).toEqual(['put', 'q"uote', '\n']);
  });

  it('makes key ranges as etcdctl does', () => {
    expect(keyRange(['a'], true, false, 'get')).toEqual({ key: Buffer.from('a'), range_end: Buffer.from('b') });
    expect(keyRange([''], true, false, 'get')).toEqual({ key: Buffer.from([0]), range_end: Buffer.from([0]) });
    expect(keyRange(['a'], false, true, 'get')).toEqual({ key: Buffer.from('a'), range_end: Buffer.from([0]) });
    expect(keyRange(['a', 'c'], false, false, 'get')).toEqual({ key: Buffer.from('a'), range_end: Buffer.from('c') });
    expect(() => keyRange(['a', 'c'], true, false, 'get')).toThrow(UsageError);
  });
});
