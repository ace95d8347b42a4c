/** Human-readable renderings of entries, messages and Ready batches, for transcripts and logs. */
import { decodeConfChange } from './codec.js';
import { dropReasonOfCode } from './raft.js';
import type { Ready } from './raw-node.js';
import type { ConfChange, Entry, HardState, Message } from './types.js';

const decoder = new TextDecoder('utf-8', { fatal: false });

function printable(data: Uint8Array): string {
  const text = decoder.decode(data);
  // Binary payloads are shown as hex so transcripts stay readable and stable.
  return /^[\x20-\x7e]*$/.test(text) ? JSON.stringify(text) : `0x${toHex(data)}`;
}

function toHex(data: Uint8Array): string {
  let out = '';
  for (const byte of data) out += byte.toString(16).padStart(2, '0');
  return out;
}

export function describeConfChange(cc: ConfChange): string {
  const changes = cc.changes.map((c) => {
    switch (c.type) {
      case 'add-voter':
        return `v${c.nodeId}`;
      case 'add-learner':
        return `l${c.nodeId}`;
      case 'remove':
        return `r${c.nodeId}`;
      case 'update':
        return `u${c.nodeId}`;
    }
  });
  const transition = cc.transition === 'auto' ? '' : ` ${cc.transition}`;
  return changes.length === 0 ? `leave-joint${transition}` : `${changes.join(' ')}${transition}`;
}

export function describeEntry(e: Entry): string {
  if (e.type === 'conf-change') {
    let text: string;
    try {
      text = describeConfChange(decodeConfChange(e.data));
    } catch {
      text = `<undecodable ${e.data.byteLength} bytes>`;
    }
    return `${e.term}/${e.index} ConfChange ${text}`;
  }
  return e.data.byteLength === 0 ? `${e.term}/${e.index} EntryNormal ""` : `${e.term}/${e.index} EntryNormal ${printable(e.data)}`;
}

export function describeHardState(hs: HardState): string {
  return `HardState Term:${hs.term} Vote:${hs.vote} Commit:${hs.commit}`;
}

export function describeMessage(m: Message): string {
  let text = `${m.from}->${m.to} ${m.type} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.reject) text += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.type === 'MsgPropDropped') text += ` Refused:${dropReasonOfCode(m.rejectHint)}`;
  if (m.commit !== 0) text += ` Commit:${m.commit}`;
  if (m.entries.length > 0) text += ` Entries:[${m.entries.map(describeEntry).join(', ')}]`;
  if (m.snapshot !== undefined) {
    const md = m.snapshot.metadata;
    text += ` Snapshot: Index:${md.index} Term:${md.term} Voters:(${md.confState.voters.join(' ')})`;
    if (md.confState.learners.length > 0) text += ` Learners:(${md.confState.learners.join(' ')})`;
  }
  if (m.context !== undefined && m.context.byteLength > 0) text += ` Context:${printable(m.context)}`;
  return text;
}

export function describeReady(rd: Ready): string {
  const lines: string[] = [];
  if (rd.softState !== undefined) lines.push(`Lead:${rd.softState.lead} State:${rd.softState.role}`);
  if (rd.hardState !== undefined) lines.push(describeHardState(rd.hardState));
  if (rd.entries.length > 0) {
    lines.push('Entries:');
    for (const e of rd.entries) lines.push(`  ${describeEntry(e)}`);
  }
  if (rd.snapshot !== undefined) {
    const md = rd.snapshot.metadata;
    lines.push(`Snapshot Index:${md.index} Term:${md.term} Voters:(${md.confState.voters.join(' ')})`);
  }
  if (rd.committedEntries.length > 0) {
    lines.push('CommittedEntries:');
    for (const e of rd.committedEntries) lines.push(`  ${describeEntry(e)}`);
  }
  if (rd.messages.length > 0) {
    lines.push('Messages:');
    for (const m of rd.messages) lines.push(`  ${describeMessage(m)}`);
  }
  if (rd.messagesAfterPersist.length > 0) {
    lines.push('MessagesAfterPersist:');
    for (const m of rd.messagesAfterPersist) lines.push(`  ${describeMessage(m)}`);
  }
  for (const rs of rd.readStates) lines.push(`ReadState Index:${rs.index} Context:${printable(rs.requestContext)}`);
  for (const d of rd.droppedProposals) lines.push(`DroppedProposal ${d.reason} Entries:[${d.entries.map(describeEntry).join(', ')}]`);
  return lines.join('\n');
}
