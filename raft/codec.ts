/**
 * Binary encoding of configuration changes carried in log entries. An empty payload decodes as
 * the empty change that leaves a joint configuration.
 *
 * Layout (big-endian): version u8 | transition u8 | count u32 | count × (type u8, id u64) |
 * context length u32 | context bytes.
 */
import { LEAVE_JOINT, type ConfChange, type ConfChangeSingle, type ConfChangeTransition } from './types.js';

const VERSION = 1;
const TRANSITIONS: readonly ConfChangeTransition[] = ['auto', 'joint-implicit', 'joint-explicit'];
const CHANGE_TYPES: readonly ConfChangeSingle['type'][] = ['add-voter', 'add-learner', 'remove', 'update'];

export class ConfChangeDecodeError extends Error {
  override readonly name = 'ConfChangeDecodeError';
}

export function encodeConfChange(cc: ConfChange): Uint8Array {
  if (cc.changes.length === 0 && cc.transition === 'auto' && cc.context.byteLength === 0) return new Uint8Array(0);
  const size = 2 + 4 + cc.changes.length * 9 + 4 + cc.context.byteLength;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  let at = 0;
  view.setUint8(at++, VERSION);
  view.setUint8(at++, TRANSITIONS.indexOf(cc.transition));
  view.setUint32(at, cc.changes.length);
  at += 4;
  for (const change of cc.changes) {
    if (!Number.isSafeInteger(change.nodeId) || change.nodeId < 0) {
      throw new TypeError(`conf change node id must be a non-negative safe integer, got ${change.nodeId}`);
    }
    view.setUint8(at++, CHANGE_TYPES.indexOf(change.type));
    view.setUint32(at, Math.floor(change.nodeId / 0x1_0000_0000));
    view.setUint32(at + 4, change.nodeId >>> 0);
    at += 8;
  }
  view.setUint32(at, cc.context.byteLength);
  at += 4;
  bytes.set(cc.context, at);
  return bytes;
}

export function decodeConfChange(bytes: Uint8Array): ConfChange {
  if (bytes.byteLength === 0) return LEAVE_JOINT;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (at: number, n: number): void => {
    if (at + n > bytes.byteLength) throw new ConfChangeDecodeError(`conf change truncated at byte ${at}`);
  };
  need(0, 6);
  let at = 0;
  const version = view.getUint8(at++);
  if (version !== VERSION) throw new ConfChangeDecodeError(`unknown conf change version ${version}`);
  const transition = TRANSITIONS[view.getUint8(at++)];
  if (transition === undefined) throw new ConfChangeDecodeError('unknown conf change transition');
  const count = view.getUint32(at);
  at += 4;
  const changes: ConfChangeSingle[] = [];
  for (let i = 0; i < count; i++) {
    need(at, 9);
    const type = CHANGE_TYPES[view.getUint8(at++)];
    if (type === undefined) throw new ConfChangeDecodeError('unknown conf change type');
    const nodeId = view.getUint32(at) * 0x1_0000_0000 + view.getUint32(at + 4);
    if (!Number.isSafeInteger(nodeId)) throw new ConfChangeDecodeError('conf change node id out of range');
    at += 8;
    changes.push({ type, nodeId });
  }
  need(at, 4);
  const contextLength = view.getUint32(at);
  at += 4;
  need(at, contextLength);
  const context = bytes.slice(at, at + contextLength);
  at += contextLength;
  if (at !== bytes.byteLength) throw new ConfChangeDecodeError('trailing bytes after conf change');
  return { transition, changes, context };
}
