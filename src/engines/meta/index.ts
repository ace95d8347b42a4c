/** The meta engine's front door. */
export { MetaEngine, MetaCommandKind, META_COMMAND_VERSION, publishAttributesCommand, type MetaOutcome } from './engine.js';
export { type Member, type MemberAttributes, type MemberRecord, encodeMemberContext, membersSupport } from './members.js';
