export {
  AlarmEngine,
  AlarmType,
  AlarmCommandKind,
  ALARM_COMMAND_VERSION,
  activateAlarmCommand,
  deactivateAlarmCommand,
  alarmOutcome,
  type AlarmMember,
  type AlarmOutcome,
} from './engine.js';
