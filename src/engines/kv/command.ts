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
import { readU64, writeU64 } from '../../../storage/index';

export const COMMAND_VERSION = 1;
const HEADER_BYTES = 18;

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
  const proposer = readU64(bytes, 2);
  const requestId = readU64(bytes, 10);
  if (Number.isNaN(proposer) || Number.isNaN(requestId)) throw new CommandDecodeError('command header ids beyond 2^53');
  return {
    kind: kind as CommandKind,
    proposer,
    requestId,
    payload: bytes.subarray(HEADER_BYTES),
  };
}
