import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createServerLogger } from '../../src/server/logger.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-logger-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a log file', () => {
  it('is written in a folder made for it (a warning comes before the data dir beside it exists)', () => {
    const file = join(dir, 'not', 'yet', 'n1.log');
    const logger = createServerLogger({ name: 'n1', level: 'info', outputs: [file] });
    logger.warn('DKV_X is not a dkv server setting; ignored');
    logger.info('second');
    expect(readFileSync(file, 'utf8')).toMatch(/WARN n1: DKV_X is not a dkv server setting; ignored\n.* INFO n1: second\n$/);
  });
});
