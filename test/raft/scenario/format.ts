/**
 * Renderings the scenario transcripts need beyond raft/describe.ts: node status, progress, the
 * stored log and configurations. Every function returns lines without a trailing newline and never
 * an empty line (an empty line ends a transcript block).
 */
import { type ConfState, type Entry, type ProgressStatus, type Status, describeEntry } from '../../../raft/index.js';

function ids(list: readonly number[]): string {
  return `(${list.join(' ')})`;
}

/** `voters=(1 2 3)&&(1 2) learners=(4) learners_next=(3) autoleave`, like the core's own logs. */
export function formatConfState(cs: ConfState): string {
  let text = `voters=${ids(cs.voters)}`;
  if (cs.votersOutgoing.length > 0) text += `&&${ids(cs.votersOutgoing)}`;
  if (cs.learners.length > 0) text += ` learners=${ids(cs.learners)}`;
  if (cs.learnersNext.length > 0) text += ` learners_next=${ids(cs.learnersNext)}`;
  if (cs.autoLeave) text += ' autoleave';
  return text;
}

export function formatProgress(id: number, pr: ProgressStatus): string {
  let text = `${id}: ${pr.state} match=${pr.match} next=${pr.next}`;
  if (pr.isLearner) text += ' learner';
  if (pr.paused) text += ' paused';
  if (pr.pendingSnapshot > 0) text += ` pendingSnap=${pr.pendingSnapshot}`;
  if (!pr.recentActive) text += ' inactive';
  if (pr.inflight > 0) text += ` inflight=${pr.inflight}`;
  return text;
}

/** One line of state, then the configuration, then (on a leader) one line per member's progress. */
export function formatStatus(status: Status): string[] {
  const lines = [
    `${status.id}: ${status.role} term=${status.term} vote=${status.vote} lead=${status.lead} ` +
      `commit=${status.commit} applied=${status.applied} last=${status.lastIndex}`,
    `config: ${formatConfState(status.config)}`,
  ];
  if (status.leadTransferee !== 0) lines.push(`transferring leadership to ${status.leadTransferee}`);
  if (status.progress !== undefined) {
    lines.push('progress:');
    const members = [...status.progress.keys()].sort((a, b) => a - b);
    for (const id of members) lines.push(`  ${formatProgress(id, status.progress.get(id)!)}`);
  }
  return lines;
}

/** The short form used by `raft-state`: id, role, term, leader and commit index. */
export function formatStateLine(status: Status): string {
  return `${status.id}: ${status.role} term=${status.term} lead=${status.lead} commit=${status.commit}`;
}

/** A stored log: the compaction point (if any) followed by every entry. */
export function formatLog(options: {
  snapshotIndex: number;
  snapshotTerm: number;
  entries: readonly Entry[];
  unstable: readonly Entry[];
}): string[] {
  const lines: string[] = [];
  if (options.snapshotIndex > 0) {
    lines.push(`snapshot: index=${options.snapshotIndex} term=${options.snapshotTerm}`);
  }
  for (const entry of options.entries) lines.push(describeEntry(entry));
  for (const entry of options.unstable) lines.push(`${describeEntry(entry)} (not yet persisted)`);
  if (lines.length === 0) lines.push('log is empty');
  return lines;
}

/** Request contexts and payloads are ASCII words in transcripts. */
export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

export function bytes(word: string): Uint8Array {
  return new TextEncoder().encode(word);
}
