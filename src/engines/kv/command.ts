/**
 * The commands a KV shard's Raft log carries. A command is a small header followed by the etcd
 * request exactly as it arrived on the wire (protobuf bytes), so a write is never re-encoded on
 * its way into the log:
 *
 *   version u8 | kind u8 | proposer u64 | request id u64 | payload
 *
 * `proposer` and `request id` let the node that proposed a command find the waiting client when
 * the command is applied; every other replica ignores them. Applying is deterministic: nothing in
 * the header but the kind and payload affects state.
 */
import { assert } from '../../../raft/assert';

export const COMMAND_VERSION = 1;
const HEADER_BYTES = 18;
const TWO_32 = 0x1_0000_0000;

export const CommandKind = {
  Put: 1,
  DeleteRange: 2,
  Txn: 3,
  Compaction: 4,
} as const;
export type CommandKind = (typeof CommandKind)[keyof typeof CommandKind];

const KINDS: ReadonlySet<number> = new Set(Object.values(CommandKind));

export interface Command {
  readonly kind: CommandKind;
  readonly proposer: number;
  readonly requestId: number;
  /** The etcd request message, protobuf-encoded. */
  readonly payload: Uint8Array;
}

export class CommandDecodeError extends Error {
  override readonly name = 'CommandDecodeError';
}

function writeU64(target: Uint8Array, at: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `command header field must be a safe integer, got ${value}`);
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  view.setUint32(at, Math.floor(value / TWO_32));
  view.setUint32(at + 4, value % TWO_32);
}

function readU64(source: Uint8Array, at: number): number {
  const view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  return view.getUint32(at) * TWO_32 + view.getUint32(at + 4);
}

export function encodeCommand(command: Command): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES + command.payload.length);
  bytes[0] = COMMAND_VERSION;
  bytes[1] = command.kind;
  writeU64(bytes, 2, command.proposer);
  writeU64(bytes, 10, command.requestId);
  bytes.set(command.payload, HEADER_BYTES);
  return bytes;
}

export function decodeCommand(bytes: Uint8Array): Command {
  if (bytes.length < HEADER_BYTES) throw new CommandDecodeError(`command of ${bytes.length} bytes is shorter than its header`);
  if (bytes[0] !== COMMAND_VERSION) throw new CommandDecodeError(`unknown command version ${bytes[0]}`);
  const kind = bytes[1]!;
  if (!KINDS.has(kind)) throw new CommandDecodeError(`unknown command kind ${kind}`);
  return {
    kind: kind as CommandKind,
    proposer: readU64(bytes, 2),
    requestId: readU64(bytes, 10),
    payload: bytes.subarray(HEADER_BYTES),
  };
}
