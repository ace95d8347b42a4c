/**
 * The alarm engine: etcd's alarms (a member id and an alarm type, NOSPACE or CORRUPT) as
 * replicated state. Members raise and clear alarms by proposing commands, so every replica holds
 * the same alarms at the same applied index; they are part of the snapshot and of the hash.
 *
 * While a NOSPACE alarm is active the state machine is capped, as etcd's applierV3Capped: writes
 * that would grow the store (a Put, a Txn with a put in either branch, a lease grant) are refused
 * at apply with `no-space` on every replica alike; deletes, compaction, reads and revokes still
 * apply, so an operator can make room, defragment and disarm. Engines that write ask
 * `AlarmEngine.capped` (the `WriteCap` interface) in their apply.
 */
import { crc32c } from '../../../storage/index.js';
import { concatBytes } from '../bytes.js';
import { type ApplyContext, type Engine, type EngineCommand, EngineId, UnknownCommandError, type WriteCap } from '../engine.js';

/** etcd's AlarmType values (etcdserverpb.AlarmType; never renumber). */
export const AlarmType = {
  None: 0,
  NoSpace: 1,
  Corrupt: 2,
} as const;
export type AlarmType = (typeof AlarmType)[keyof typeof AlarmType];

/** The alarm engine's operation codes (in every alarm log entry: never renumber). */
export const AlarmCommandKind = {
  Activate: 1,
  Deactivate: 2,
} as const;

/** The alarm command format this build writes and applies. */
export const ALARM_COMMAND_VERSION = 1;

export interface AlarmMember {
  /** The member that raised it (below 2^53, as every member id). */
  readonly memberId: number;
  readonly alarm: AlarmType;
}

/** What applying an alarm command produced: the alarm it raised or cleared, none if nothing changed (as etcd). */
export interface AlarmOutcome {
  readonly kind: 'alarm';
  readonly changed: AlarmMember | undefined;
}

/** Bytes of one encoded alarm: member id f64 (BE), type u8. */
const ALARM_BYTES = 9;

function encodeAlarm(alarm: AlarmMember, into: Uint8Array, at: number): void {
  new DataView(into.buffer, into.byteOffset, into.byteLength).setFloat64(at, alarm.memberId);
  into[at + 8] = alarm.alarm;
}

function decodeAlarm(bytes: Uint8Array, at: number): AlarmMember {
  const memberId = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat64(at);
  const alarm = bytes[at + 8]!;
  if (!Number.isSafeInteger(memberId) || memberId <= 0) throw new TypeError(`alarm: bad member id ${memberId}`);
  if (alarm !== AlarmType.NoSpace && alarm !== AlarmType.Corrupt) throw new TypeError(`alarm: bad alarm type ${alarm}`);
  return { memberId, alarm };
}

function alarmCommand(kind: number, alarm: AlarmMember): EngineCommand {
  const payload = new Uint8Array(ALARM_BYTES);
  encodeAlarm(alarm, payload, 0);
  return { engine: EngineId.Alarm, version: ALARM_COMMAND_VERSION, kind, payload };
}

/** Raises `alarm` for `memberId` (a member that saw the condition proposes it). */
export function activateAlarmCommand(memberId: number, alarm: AlarmType): EngineCommand {
  if (!Number.isSafeInteger(memberId) || memberId <= 0) throw new TypeError(`bad member id ${memberId}`);
  if (alarm === AlarmType.None) throw new TypeError('an alarm to raise has a type');
  return alarmCommand(AlarmCommandKind.Activate, { memberId, alarm });
}

/** Clears `alarm` of `memberId`. */
export function deactivateAlarmCommand(memberId: number, alarm: AlarmType): EngineCommand {
  if (!Number.isSafeInteger(memberId) || memberId <= 0) throw new TypeError(`bad member id ${memberId}`);
  return alarmCommand(AlarmCommandKind.Deactivate, { memberId, alarm });
}

export function alarmOutcome(outcome: unknown): AlarmOutcome {
  return outcome as AlarmOutcome;
}

const compareAlarms = (a: AlarmMember, b: AlarmMember): number => a.memberId - b.memberId || a.alarm - b.alarm;

export class AlarmEngine implements Engine, WriteCap {
  readonly id = EngineId.Alarm;
  readonly name = 'alarm';
  readonly version = ALARM_COMMAND_VERSION;
  /** Active alarms, sorted by member id then type (the snapshot and hash order). */
  private alarms: AlarmMember[] = [];

  /** Whether writes that grow the store are refused (a NOSPACE alarm is active). */
  get capped(): boolean {
    return this.alarms.some((a) => a.alarm === AlarmType.NoSpace);
  }

  /** Active alarms of `type` (None: every alarm), in member id order. */
  list(type: AlarmType = AlarmType.None): AlarmMember[] {
    return this.alarms.filter((a) => type === AlarmType.None || a.alarm === type);
  }

  apply(command: EngineCommand, _context: ApplyContext): AlarmOutcome {
    if (command.payload.length !== ALARM_BYTES) throw new UnknownCommandError(`alarm command of ${command.payload.length} bytes`);
    const given = decodeAlarm(command.payload, 0);
    const at = this.alarms.findIndex((a) => compareAlarms(a, given) === 0);
    switch (command.kind) {
      case AlarmCommandKind.Activate:
        if (at >= 0) return { kind: 'alarm', changed: undefined };
        this.alarms = [...this.alarms, given].sort(compareAlarms);
        return { kind: 'alarm', changed: given };
      case AlarmCommandKind.Deactivate:
        if (at < 0) return { kind: 'alarm', changed: undefined };
        this.alarms = this.alarms.filter((_, i) => i !== at);
        return { kind: 'alarm', changed: given };
      default:
        throw new UnknownCommandError(`unknown alarm command kind ${command.kind}`);
    }
  }

  private encode(): Uint8Array {
    const bytes = new Uint8Array(4 + ALARM_BYTES * this.alarms.length);
    new DataView(bytes.buffer).setUint32(0, this.alarms.length);
    this.alarms.forEach((alarm, i) => encodeAlarm(alarm, bytes, 4 + ALARM_BYTES * i));
    return bytes;
  }

  snapshot(): Iterator<Uint8Array> {
    return [this.encode()][Symbol.iterator]();
  }

  restore(chunks: readonly Uint8Array[]): void {
    if (chunks.length === 0) {
      this.alarms = [];
      return;
    }
    const bytes = concatBytes(chunks);
    if (bytes.length < 4) throw new TypeError('alarm snapshot section is cut off');
    const count = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
    if (bytes.length !== 4 + ALARM_BYTES * count) throw new TypeError(`alarm snapshot section of ${bytes.length} bytes does not hold ${count} alarms`);
    const restored: AlarmMember[] = [];
    for (let i = 0; i < count; i++) restored.push(decodeAlarm(bytes, 4 + ALARM_BYTES * i));
    this.alarms = restored.sort(compareAlarms);
  }

  hash(): number {
    return crc32c(this.encode());
  }
}
