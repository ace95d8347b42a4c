/** `dkv lease …`: etcd leases from the command line, printed as etcdctl prints them. */
import { type Decoded, longsAsStrings, methodCodec } from '../client/index.js';
import { UsageError, parseCommand, withUsage } from './args.js';
import { Interrupts } from './holding.js';
import { goJson, headerJson, int, list } from './output.js';
import { type Endpoints, exitFailure, remoteOf, remoteOptions, remoteOptionsHelp, reportFailure } from './remote.js';
import { LeaseKeeper, describeLoss, leaseHex } from './session.js';

export const leaseHelp = `Usage: dkv lease grant TTL [--id HEX] [options]
       dkv lease revoke ID [options]
       dkv lease keep-alive ID [--once] [options]
       dkv lease timetolive ID [--keys] [options]
       dkv lease list [options]

  grant       grants a lease of TTL seconds (raised to the server's minimum, 1.5 election
              timeouts); the server picks the id unless --id gives one
  revoke      revokes a lease: every key attached to it is deleted, all in one revision
  keep-alive  renews the lease every third of its TTL until interrupted (Ctrl-C), printing each
              renewal; exits 1 when the lease is gone. --once renews once
  timetolive  the lease's granted and remaining TTL; --keys lists the keys attached to it
  list        every lease's id

Lease ids are hexadecimal, as etcdctl prints them.

Options:
  --id HEX               grant: the lease's id
  --once                 keep-alive: renew once
  --keys                 timetolive: list the attached keys
  --json                 the same as -w json
${remoteOptionsHelp}
Exit status: 0 done, 1 the server refused or could not be reached, 2 bad command line.
`;

const codec = (method: string) => methodCodec('etcdserverpb.Lease', method, longsAsStrings);

/** A lease id on the command line: hex, as etcdctl takes it (any int64, printed unsigned). */
function parseLeaseId(text: string | undefined): string {
  if (text === undefined || !/^[0-9a-fA-F]{1,16}$/.test(text)) throw new UsageError(`a lease id is 1 to 16 hex digits, got "${text ?? ''}"`);
  return BigInt.asIntN(64, BigInt(`0x${text}`)).toString();
}

/** A Lease response as etcdctl -w json prints it (Go's encoding of the proto structs). */
function json(r: Decoded): string {
  const leases = list(r.leases, (l) => ({ ID: int(l.ID) }));
  const keys = (r.keys as Buffer[] | undefined) ?? [];
  return `${goJson({ header: headerJson(r.header), ID: int(r.ID), TTL: int(r.TTL), grantedTTL: int(r.grantedTTL), keys: keys.length === 0 ? undefined : keys, leases })}\n`;
}

export async function leaseCommand(args: string[]): Promise<number> {
  return withUsage(leaseHelp, async () => {
    const [action, ...rest] = args;
    if (action === '--help' || action === '-h') {
      process.stdout.write(leaseHelp);
      return 0;
    }
    if (action === undefined || action.startsWith('-')) throw new UsageError('lease needs a subcommand: grant, revoke, keep-alive, timetolive or list');
    const { values: o, positionals: positional } = parseCommand(rest, {
      id: { type: 'string' },
      once: { type: 'boolean' },
      keys: { type: 'boolean' },
      json: { type: 'boolean' },
      ...remoteOptions,
    });
    if (o.help === true) {
      process.stdout.write(leaseHelp);
      return 0;
    }
    const remote = remoteOf(o, 'dkv lease');
    const endpoints = remote.endpoints;
    const asJson = o.json === true || remote.format === 'json';
    const print = (response: Decoded, simple: string): void => {
      process.stdout.write(asJson ? json(response) : simple);
    };
    try {
      switch (action) {
        case 'grant': {
          const ttl = positional[0];
          if (ttl === undefined || !/^\d+$/.test(ttl)) throw new UsageError(`grant needs a TTL in whole seconds, got "${ttl ?? ''}"`);
          const r = await endpoints.unary(codec('LeaseGrant'), { TTL: ttl, ID: o.id === undefined ? '0' : parseLeaseId(o.id) });
          print(r, `lease ${leaseHex(r.ID)} granted with TTL(${String(r.TTL)}s)\n`);
          return 0;
        }
        case 'revoke': {
          const id = parseLeaseId(positional[0]);
          const r = await endpoints.unary(codec('LeaseRevoke'), { ID: id });
          print(r, `lease ${leaseHex(id)} revoked\n`);
          return 0;
        }
        case 'timetolive': {
          const id = parseLeaseId(positional[0]);
          const r = await endpoints.unary(codec('LeaseTimeToLive'), { ID: id, keys: o.keys === true });
          if (String(r.TTL) === '-1') {
            print(r, `lease ${leaseHex(id)} already expired\n`);
            return 0;
          }
          const keys = o.keys === true ? `, attached keys([${(r.keys as Buffer[]).map((k) => k.toString()).join(' ')}])` : '';
          print(r, `lease ${leaseHex(id)} granted with TTL(${String(r.grantedTTL)}s), remaining(${String(r.TTL)}s)${keys}\n`);
          return 0;
        }
        case 'list': {
          const r = await endpoints.unary(codec('LeaseLeases'), {});
          const leases = (r.leases as Array<{ ID: string }>).map((l) => leaseHex(l.ID));
          print(r, `found ${leases.length} leases\n${leases.map((l) => `${l}\n`).join('')}`);
          return 0;
        }
        case 'keep-alive':
          return await keepAlive(endpoints, parseLeaseId(positional[0]), o.once === true, print);
        default:
          throw new UsageError(`unknown lease command "${action}"`);
      }
    } catch (error) {
      if (error instanceof UsageError) throw error;
      return reportFailure('dkv lease', error);
    } finally {
      endpoints.close();
    }
  }, 'dkv lease');
}

/**
 * Renews until interrupted (or once), printing each renewal; exits 1 when the server answers TTL
 * 0 (the lease is gone) or no renewal gets through before the lease's deadline (before the
 * first, after three failures per endpoint).
 */
async function keepAlive(endpoints: Endpoints, id: string, once: boolean, print: (r: Decoded, simple: string) => void): Promise<number> {
  const interrupts = new Interrupts();
  try {
    return await new Promise<number>((resolve) => {
      const keeper = new LeaseKeeper(endpoints, id, {
        onRenewed: (r) => {
          print(r, `lease ${leaseHex(id)} keepalived with TTL(${String(r.TTL)})\n`);
          if (!once) return;
          keeper.stop();
          resolve(0);
        },
        onLost: (loss) => {
          if (loss.kind === 'gone') process.stderr.write(`lease ${leaseHex(id)} expired or revoked.\n`);
          else reportFailure('dkv lease', loss.error ?? new Error(describeLoss(id, loss)));
          resolve(exitFailure);
        },
      });
      interrupts.signal.addEventListener('abort', () => {
        keeper.stop();
        resolve(0);
      });
      keeper.start();
    });
  } finally {
    interrupts.dispose();
  }
}
