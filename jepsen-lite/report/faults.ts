/**
 * Fault windows by kind: one colour and one label per kind, so a reader tells a network partition
 * from a paused process at a glance. The kinds are those the nemeses record: the simulator's
 * (`sim/jepsen/faults.ts`: partition, bridge, ring, isolate-leader, crash, pause, drop, delay,
 * duplicate, reorder, transfer; the lease holders' holder-isolate, holder-minority, holder-pause) and real
 * mode's (`real/nemesis.ts`: partition, kill, pause, delay, membership; the lock and election
 * clients' holder-pause and leader-pause). A kind not listed gets a colour derived from its name.
 */
import type { FaultWindow } from '../history.js';
import { escapeHtml } from './text.js';

interface KindStyle {
  readonly colour: string;
  readonly label: string;
}

/** Network faults are shades of red and orange; process faults blues and purples; leader transfers green; client faults browns. */
const knownKinds: Readonly<Record<string, KindStyle>> = {
  partition: { colour: '#d62728', label: 'network partition' },
  bridge: { colour: '#ff7f0e', label: 'network partition (bridge)' },
  ring: { colour: '#e377c2', label: 'network partition (ring)' },
  'isolate-leader': { colour: '#a50f15', label: 'network partition (leader isolated)' },
  drop: { colour: '#17becf', label: 'messages dropped' },
  delay: { colour: '#bcbd22', label: 'network delay' },
  duplicate: { colour: '#7f7f7f', label: 'messages duplicated' },
  reorder: { colour: '#637939', label: 'messages reordered' },
  crash: { colour: '#393b79', label: 'crash (kill, restart)' },
  kill: { colour: '#393b79', label: 'kill (SIGKILL, restart)' },
  pause: { colour: '#1f77b4', label: 'pause (SIGSTOP)' },
  transfer: { colour: '#2ca02c', label: 'leader transfer (MoveLeader)' },
  membership: { colour: '#9467bd', label: 'member replaced' },
  disk: { colour: '#843c39', label: 'disk fault' },
  'holder-pause': { colour: '#8c564b', label: 'lock holder paused' },
  'leader-pause': { colour: '#c49c94', label: 'election leader paused' },
  'holder-isolate': { colour: '#e6550d', label: 'lease holder cut off (network partition)' },
  'holder-minority': { colour: '#fd8d3c', label: 'lease holder reaches a minority (network partition)' },
};

/** A colour for a kind not in the table: a hue from the kind's FNV-1a hash, the same every time. */
export function fallbackColour(kind: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < kind.length; i++) {
    hash ^= kind.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `hsl(${hash % 360}, 55%, 42%)`;
}

export function faultColour(kind: string): string {
  return knownKinds[kind]?.colour ?? fallbackColour(kind);
}

export function faultKindLabel(kind: string): string {
  return knownKinds[kind]?.label ?? kind;
}

/** The kinds present, in the order they first appear. */
export function faultKindsPresent(faults: readonly FaultWindow[]): string[] {
  return [...new Set(faults.map((f) => f.kind))];
}

/** One legend entry per kind present (an empty string when there is none). */
export function faultLegend(faults: readonly FaultWindow[]): string {
  return faultKindsPresent(faults)
    .map((kind) => `<span class="legend-fault" data-kind="${escapeHtml(kind)}"><span class="sw" style="background:${faultColour(kind)};opacity:.45"></span>${escapeHtml(faultKindLabel(kind))}</span>`)
    .join(' ');
}

/** `fault.end`, or `endMs` for a window still open when the run ended. */
export function faultEnd(fault: FaultWindow, endMs: number): number {
  return fault.end ?? endMs;
}
