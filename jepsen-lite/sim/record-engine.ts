/**
 * The engine of `dkv sim`'s Raft scenarios: it applies opaque payloads by counting them and
 * folding them into a digest, so replicas that applied the same commands agree and a snapshot
 * carries that agreement. (The state machine's applied chain checks the whole log besides.)
 */
import type { ApplyContext, Engine, EngineCommand } from '../../src/engines/index.js';
import { hashBytes } from '../../src/runtime/index.js';

/** Engines of the simulator use ids from 200 up, never taken by the product's engines. */
export const RECORD_ENGINE_ID = 200;
export const RECORD_COMMAND_VERSION = 1;
const RECORD_KIND = 1;
const STATE_BYTES = 12;

export function recordCommand(payload: Uint8Array): EngineCommand {
  return { engine: RECORD_ENGINE_ID, version: RECORD_COMMAND_VERSION, kind: RECORD_KIND, payload };
}

export class RecordEngine implements Engine {
  readonly id = RECORD_ENGINE_ID;
  readonly name = 'record';
  readonly version = RECORD_COMMAND_VERSION;
  count = 0;
  digest = 0x811c9dc5;
  /** Commands applied with the proposer's decoded payload (`EngineCommand.decoded`): only the proposer's own. */
  decodedApplied = 0;
  /** The payloads applied since this state started (only with `keep`: the demo prints them). */
  readonly kept: Uint8Array[] = [];

  constructor(private readonly keep = false) {}

  apply(command: EngineCommand, _context: ApplyContext): number {
    this.count++;
    if (command.decoded !== undefined) this.decodedApplied++;
    this.digest = hashBytes(this.digest, command.payload);
    if (this.keep) this.kept.push(command.payload);
    return this.count;
  }

  snapshot(): Iterator<Uint8Array> {
    const bytes = new Uint8Array(STATE_BYTES);
    const view = new DataView(bytes.buffer);
    view.setFloat64(0, this.count);
    view.setUint32(8, this.digest);
    return [bytes][Symbol.iterator]();
  }

  restore(chunks: readonly Uint8Array[]): void {
    this.kept.length = 0;
    if (chunks.length === 0) {
      this.count = 0;
      this.digest = 0x811c9dc5;
      return;
    }
    const bytes = chunks[0]!;
    if (chunks.length !== 1 || bytes.length !== STATE_BYTES) throw new TypeError('record engine: bad snapshot section');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.count = view.getFloat64(0);
    this.digest = view.getUint32(8);
  }

  hash(): number {
    return (this.digest ^ this.count) >>> 0;
  }
}
