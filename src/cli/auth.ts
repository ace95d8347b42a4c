/**
 * `dkv user …`, `dkv role …` and `dkv auth enable|disable|status`: etcd's Auth service with
 * etcdctl 3.4's arguments and output (simple lines, or `-w json` as etcdctl prints the response).
 */
import { type Decoded, longsAsStrings, methodCodec, prefixRangeEnd } from '../client/index.js';
import { errorCodeOfMessage } from '../errors.js';
import { UsageError, withUsage } from './args.js';
import { askPassword, readPasswordFromStdin } from './credentials.js';
import { goJson, headerJson, int, list } from './output.js';
import { type Remote, failureMessage, remoteOptionsHelp, runRemote } from './remote.js';

const authCodec = (method: string) => methodCodec('etcdserverpb.Auth', method, longsAsStrings);

/** etcd's root user and role: enabling auth needs both, the role granted to the user. */
const rootName = 'root';

/** The key etcd reads as "every key from here on" in a range end (and, as a key, the first key). */
const openEnd = Buffer.from([0]);

export const userHelp = `Usage: dkv user add NAME[:PASSWORD] [--no-password] [--new-user-password P] [--interactive=false] [options]
       dkv user get NAME [--detail] [options]
       dkv user list [options]
       dkv user delete NAME [options]
       dkv user passwd NAME [--new-user-password P] [--interactive=false] [options]
       dkv user grant-role NAME ROLE [options]
       dkv user revoke-role NAME ROLE [options]

The cluster's users, as etcdctl user. Without a password on the command line, add and passwd
ask for it twice on the terminal (with --interactive=false: the first word on stdin).

  add          creates a user ("User NAME created")
  get          the user's roles ("User: NAME", "Roles: …"); --detail: each role's permissions
  list         every user, one a line
  delete       deletes a user
  passwd       changes a user's password ("Password updated"); its tokens stop working
  grant-role   grants ROLE to the user
  revoke-role  revokes ROLE from the user

Options:
  --no-password          add: a user without a password (it cannot authenticate; root's
                         tokens are not affected)
  --new-user-password P  add, passwd: the new password
  --interactive=false    add, passwd: read the password from stdin instead of the terminal
  --detail               get: print each role's permissions too
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

export const roleHelp = `Usage: dkv role add NAME [options]
       dkv role get NAME [options]
       dkv role list [options]
       dkv role delete NAME [options]
       dkv role grant-permission NAME read|write|readwrite KEY [RANGE_END] [--prefix|--from-key] [options]
       dkv role revoke-permission NAME KEY [RANGE_END] [--prefix|--from-key] [options]

The cluster's roles and their key permissions, as etcdctl role.

  add                creates a role ("Role NAME created")
  get                the role's permissions, read then write, each a key or a range
                     "[KEY, RANGE_END)" ("<open ended>" for --from-key, "(prefix KEY)" for
                     a prefix)
  list               every role, one a line
  delete             deletes a role
  grant-permission   lets the role read, write or both KEY, [KEY, RANGE_END), the keys with
                     prefix KEY (--prefix) or every key >= KEY (--from-key); an empty KEY
                     with --prefix or --from-key is every key
  revoke-permission  takes back the permission of exactly that key or range

Options:
  --prefix               grant-permission, revoke-permission: the keys that start with KEY
  --from-key             grant-permission, revoke-permission: every key >= KEY
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

export const authHelp = `Usage: dkv auth enable|disable|status [options]

  enable    turns authentication on ("Authentication Enabled"); the user root must exist. As
            etcdctl, the role root is created and granted to root first if it is missing.
  disable   turns authentication off ("Authentication Disabled")
  status    "Authentication Status: true|false" and the auth store's revision

Once auth is on every call needs --user (root for user, role and auth commands).

Options:
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

type Call = (method: string, request: object) => Promise<Decoded>;

function caller(remote: Remote): Call {
  // Every Auth change goes through Raft; none is sent twice unless refused unapplied.
  const reads = new Set(['UserGet', 'UserList', 'RoleGet', 'RoleList', 'AuthStatus']);
  return (method, request) => remote.endpoints.unary(authCodec(method), request, { write: !reads.has(method) });
}

/** Prints `simple`, or the response as etcdctl -w json prints it (`json`: its fields besides the header). */
function printer(remote: Remote): (r: Decoded, simple: string, json?: object) => void {
  return (r, simple, json = {}) => {
    process.stdout.write(remote.format === 'json' ? `${goJson({ header: headerJson(r.header), ...json })}\n` : simple);
  };
}

function argumentsOf(positionals: readonly string[], count: number, usage: string): string[] {
  if (positionals.length !== count) throw new UsageError(usage);
  return [...positionals];
}

// ---------------------------------------------------------------------------------------------
// user

const userOptions = {
  'no-password': { type: 'boolean' },
  'new-user-password': { type: 'string' },
  'no-interactive': { type: 'boolean' },
  detail: { type: 'boolean' },
} as const;

/** etcdctl's --interactive=false (a Go bool flag) as parseArgs can read it. */
function interactiveFlags(args: readonly string[]): string[] {
  return args.flatMap((arg) => {
    const match = /^--interactive(?:=(.*))?$/.exec(arg);
    if (match === null) return [arg];
    const value = (match[1] ?? 'true').toLowerCase();
    if (value === 'true' || value === '1') return [];
    if (value === 'false' || value === '0') return ['--no-interactive'];
    throw new UsageError(`--interactive must be true or false, got "${match[1] ?? ''}"`);
  });
}

/** The new password of add or passwd: --new-user-password, else stdin or the terminal (typed twice). */
async function newPassword(name: string, o: { 'new-user-password'?: string | undefined; 'no-interactive'?: boolean | undefined }): Promise<string> {
  if (o['new-user-password'] !== undefined) return o['new-user-password'];
  if (o['no-interactive'] === true) return readPasswordFromStdin();
  if (process.stdin.isTTY !== true) {
    throw new UsageError(`no password for ${name}: give NAME:PASSWORD (add), --new-user-password, --interactive=false (reads stdin) or --no-password (add); stdin is not a terminal to ask on`);
  }
  const first = await askPassword(`Password of ${name}: `);
  const again = await askPassword(`Type password of ${name} again for confirmation: `);
  if (first !== again) throw new Error('given passwords are different');
  return first;
}

export function userCommand(args: string[]): Promise<number> {
  // interactiveFlags' usage errors print as the others do.
  return withUsage(userHelp, () => runRemote({ name: 'user', help: userHelp, options: userOptions }, interactiveFlags(args), async (remote, o, positionals) => {
    const [action, ...rest] = positionals;
    const call = caller(remote);
    const print = printer(remote);
    if (action !== 'add' && o['no-password'] === true) throw new UsageError('--no-password applies to add');
    if (action !== 'add' && action !== 'passwd' && (o['new-user-password'] !== undefined || o['no-interactive'] === true)) {
      throw new UsageError('--new-user-password and --interactive apply to add and passwd');
    }
    if (action !== 'get' && o.detail === true) throw new UsageError('--detail applies to get');
    switch (action) {
      case 'add': {
        const [spec] = argumentsOf(rest, 1, 'user add command requires user name as its argument');
        const noPassword = o['no-password'] === true;
        if (noPassword && o['new-user-password'] !== undefined) throw new UsageError('--no-password and --new-user-password cannot be set together');
        let name = spec!;
        let password = '';
        if (!noPassword) {
          const colon = name.indexOf(':');
          // As etcdctl: with --new-user-password the whole argument is the name.
          if (o['new-user-password'] === undefined && colon >= 0) {
            password = name.slice(colon + 1);
            name = name.slice(0, colon);
          } else password = await newPassword(name, o);
        }
        if (name === '') throw new UsageError('empty user name is not allowed');
        const r = await call('UserAdd', { name, password, options: { no_password: noPassword } });
        print(r, `User ${name} created\n`);
        return 0;
      }
      case 'get': {
        const [name] = argumentsOf(rest, 1, 'user get command requires user name as its argument');
        const r = await call('UserGet', { name });
        const roles = r.roles as string[];
        if (o.detail !== true || remote.format === 'json') {
          print(r, `User: ${name!}\nRoles:${roles.map((role) => ` ${role}`).join('')}\n`, { roles: list(roles, String) });
          return 0;
        }
        let out = `User: ${name!}\n`;
        for (const role of roles) out += `\n${roleListing(role, (await call('RoleGet', { role })).perm as Decoded[])}`;
        process.stdout.write(out);
        return 0;
      }
      case 'list': {
        argumentsOf(rest, 0, 'user list command requires no arguments');
        const r = await call('UserList', {});
        const users = r.users as string[];
        print(r, users.map((u) => `${u}\n`).join(''), { users: list(users, String) });
        return 0;
      }
      case 'delete': {
        const [name] = argumentsOf(rest, 1, 'user delete command requires user name as its argument');
        print(await call('UserDelete', { name }), `User ${name!} deleted\n`);
        return 0;
      }
      case 'passwd': {
        const [name] = argumentsOf(rest, 1, 'user passwd command requires user name as its argument');
        const password = await newPassword(name!, o);
        print(await call('UserChangePassword', { name, password }), 'Password updated\n');
        return 0;
      }
      case 'grant-role': {
        const [user, role] = argumentsOf(rest, 2, 'user grant command requires user name and role name as its argument');
        print(await call('UserGrantRole', { user, role }), `Role ${role!} is granted to user ${user!}\n`);
        return 0;
      }
      case 'revoke-role': {
        const [name, role] = argumentsOf(rest, 2, 'user revoke-role requires user name and role name as its argument');
        print(await call('UserRevokeRole', { name, role }), `Role ${role!} is revoked from user ${name!}\n`);
        return 0;
      }
      default:
        throw new UsageError(action === undefined ? 'user needs a subcommand: add, get, list, delete, passwd, grant-role or revoke-role' : `unknown user subcommand "${action}"`);
    }
  }), 'dkv user');
}

// ---------------------------------------------------------------------------------------------
// role

const roleOptions = {
  prefix: { type: 'boolean' },
  'from-key': { type: 'boolean' },
} as const;

const permissionTypes: Readonly<Record<string, string>> = { READ: 'READ', WRITE: 'WRITE', READWRITE: 'READWRITE' };

/** etcdctl's permRange: KEY [RANGE_END] with --prefix or --from-key as the key and range end. */
export function permissionRange(keys: readonly string[], prefix: boolean, fromKey: boolean): { key: Buffer; range_end: Buffer } {
  const [key, rangeEnd, ...extra] = keys;
  if (key === undefined) throw new UsageError('a KEY is needed');
  if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
  if (prefix && fromKey) throw new UsageError('--from-key and --prefix flags are mutually exclusive');
  if (rangeEnd !== undefined && (prefix || fromKey)) throw new UsageError(`unexpected endkey argument with --${prefix ? 'prefix' : 'from-key'} flag`);
  // The empty key is every key: [\x00, \x00) reads as open ended on the server.
  if (key === '') return { key: openEnd, range_end: prefix || fromKey ? openEnd : Buffer.alloc(0) };
  if (prefix) return { key: Buffer.from(key), range_end: prefixRangeEnd(Buffer.from(key)) };
  if (fromKey) return { key: Buffer.from(key), range_end: openEnd };
  return { key: Buffer.from(key), range_end: Buffer.from(rangeEnd ?? '') };
}

const isRead = (perm: Decoded): boolean => permType(perm) !== 'WRITE';
const isWrite = (perm: Decoded): boolean => permType(perm) !== 'READ';

/** The permission's type by name (protobuf decodes the enum by name; 0, READ, may be absent). */
function permType(perm: Decoded): string {
  const type = perm.permType;
  if (type === 1 || type === 'WRITE') return 'WRITE';
  if (type === 2 || type === 'READWRITE') return 'READWRITE';
  return 'READ';
}

/** etcdctl's RoleGet: "Role NAME", then the read and the write permissions, a tab before each. */
export function roleListing(role: string, perms: readonly Decoded[]): string {
  const line = (perm: Decoded): string => {
    const key = (perm.key as Buffer).toString();
    const end = perm.range_end as Buffer;
    if (end.length === 0) return `\t${key}\n`;
    const range = end.equals(openEnd) ? `\t[${key}, <open ended>` : `\t[${key}, ${end.toString()})`;
    return `${range}${prefixRangeEnd(Buffer.from(key)).equals(end) ? ` (prefix ${key})` : ''}\n`;
  };
  return `Role ${role}\nKV Read:\n${perms.filter(isRead).map(line).join('')}KV Write:\n${perms.filter(isWrite).map(line).join('')}`;
}

function permissionJson(perm: Decoded): object {
  const code = { READ: 0, WRITE: 1, READWRITE: 2 }[permType(perm)];
  return { permType: int(code), key: (perm.key as Buffer).length > 0 ? perm.key : undefined, range_end: (perm.range_end as Buffer).length > 0 ? perm.range_end : undefined };
}

/** etcdctl's RoleRevokePermission line. */
function revokedLine(role: string, key: Buffer, rangeEnd: Buffer): string {
  if (rangeEnd.length === 0) return `Permission of key ${key.toString()} is revoked from role ${role}\n`;
  if (rangeEnd.equals(openEnd)) return `Permission of range [${key.toString()}, <open ended> is revoked from role ${role}\n`;
  return `Permission of range [${key.toString()}, ${rangeEnd.toString()}) is revoked from role ${role}\n`;
}

export function roleCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'role', help: roleHelp, options: roleOptions }, args, async (remote, o, positionals) => {
    const [action, ...rest] = positionals;
    const call = caller(remote);
    const print = printer(remote);
    const ranged = action === 'grant-permission' || action === 'revoke-permission';
    if (!ranged && (o.prefix === true || o['from-key'] === true)) throw new UsageError('--prefix and --from-key apply to grant-permission and revoke-permission');
    switch (action) {
      case 'add':
      case 'delete': {
        const [role] = argumentsOf(rest, 1, `role ${action} command requires role name as its argument`);
        const r = await call(action === 'add' ? 'RoleAdd' : 'RoleDelete', action === 'add' ? { name: role } : { role });
        print(r, `Role ${role!} ${action === 'add' ? 'created' : 'deleted'}\n`);
        return 0;
      }
      case 'get': {
        const [role] = argumentsOf(rest, 1, 'role get command requires role name as its argument');
        const r = await call('RoleGet', { role });
        print(r, roleListing(role!, r.perm as Decoded[]), { perm: list(r.perm, permissionJson) });
        return 0;
      }
      case 'list': {
        argumentsOf(rest, 0, 'role list command requires no arguments');
        const r = await call('RoleList', {});
        const roles = r.roles as string[];
        print(r, roles.map((role) => `${role}\n`).join(''), { roles: list(roles, String) });
        return 0;
      }
      case 'grant-permission': {
        const [name, type, ...keys] = rest;
        if (name === undefined || type === undefined || keys.length === 0) {
          throw new UsageError('role grant command requires role name, permission type, and key [endkey] as its argument');
        }
        const permType = permissionTypes[type.toUpperCase()];
        if (permType === undefined) throw new UsageError(`permission type must be read, write or readwrite, got "${type}"`);
        const range = permissionRange(keys, o.prefix === true, o['from-key'] === true);
        print(await call('RoleGrantPermission', { name, perm: { permType, ...range } }), `Role ${name} updated\n`);
        return 0;
      }
      case 'revoke-permission': {
        const [role, ...keys] = rest;
        if (role === undefined || keys.length === 0) throw new UsageError('role revoke-permission command requires role name and key [endkey] as its argument');
        const range = permissionRange(keys, o.prefix === true, o['from-key'] === true);
        print(await call('RoleRevokePermission', { role, ...range }), revokedLine(role, range.key, range.range_end));
        return 0;
      }
      default:
        throw new UsageError(action === undefined ? 'role needs a subcommand: add, get, list, delete, grant-permission or revoke-permission' : `unknown role subcommand "${action}"`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// auth

export function authCommand(args: string[]): Promise<number> {
  return runRemote({ name: 'auth', help: authHelp, options: {} }, args, async (remote, _o, positionals) => {
    const [action, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`too many arguments: ${extra.join(' ')}`);
    const call = caller(remote);
    const print = printer(remote);
    switch (action) {
      case 'enable': {
        print(await enable(call), 'Authentication Enabled\n');
        return 0;
      }
      case 'disable':
        print(await call('AuthDisable', {}), 'Authentication Disabled\n');
        return 0;
      case 'status': {
        const r = await call('AuthStatus', {});
        print(r, `Authentication Status: ${String(r.enabled === true)}\nAuthRevision: ${String(r.authRevision)}\n`, {
          enabled: r.enabled === true ? true : undefined,
          authRevision: int(r.authRevision),
        });
        return 0;
      }
      default:
        throw new UsageError(action === undefined ? 'auth needs a subcommand: enable, disable or status' : `unknown auth subcommand "${action}"`);
    }
  });
}

/** AuthEnable; as etcdctl, when the role root is missing it is created and granted to root, then again. */
async function enable(call: Call): Promise<Decoded> {
  try {
    return await call('AuthEnable', {});
  } catch (error) {
    if (errorCodeOfMessage(failureMessage(error)) !== 'root-role-not-exist') throw error;
  }
  await call('RoleAdd', { name: rootName }).catch((error: unknown) => {
    if (errorCodeOfMessage(failureMessage(error)) !== 'role-already-exists') throw error;
  });
  await call('UserGrantRole', { user: rootName, role: rootName });
  return call('AuthEnable', {});
}
