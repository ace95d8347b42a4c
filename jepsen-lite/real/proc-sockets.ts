/**
 * Which process owns the other end of a loopback TCP connection, read from Linux's /proc:
 * the connection's socket inode from /proc/net/tcp (and tcp6, for v4-mapped sockets), then the
 * process whose /proc/<pid>/fd holds "socket:[inode]". The proxy uses it to tell which member
 * dialed it without root, without network namespaces and without the member's cooperation.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';

const tcpTables = ['/proc/net/tcp', '/proc/net/tcp6'] as const;

/** Field positions in a /proc/net/tcp line (after splitting on whitespace). */
const localAddressField = 1;
const remoteAddressField = 2;
const inodeField = 9;

function portOf(address: string | undefined): number {
  const colon = address?.lastIndexOf(':') ?? -1;
  if (address === undefined || colon < 0) return -1;
  return Number.parseInt(address.slice(colon + 1), 16);
}

/** Parses a /proc/net/tcp table: inode of every socket by "localPort remotePort". */
export function socketInodes(table: string): Map<string, string> {
  const inodes = new Map<string, string>();
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const inode = fields[inodeField];
    if (inode === undefined || inode === '0') continue;
    inodes.set(`${portOf(fields[localAddressField])} ${portOf(fields[remoteAddressField])}`, inode);
  }
  return inodes;
}

/** The inode of the socket whose local port is `localPort` and peer port is `remotePort`. */
export async function findSocketInode(localPort: number, remotePort: number): Promise<string | undefined> {
  for (const table of tcpTables) {
    let text: string;
    try {
      text = await readFile(table, 'utf8');
    } catch {
      continue; // no IPv6 on this host
    }
    const inode = socketInodes(text).get(`${localPort} ${remotePort}`);
    if (inode !== undefined) return inode;
  }
  return undefined;
}

/** Whether process `pid` holds the socket `inode` open. */
export async function processHoldsSocket(pid: number, inode: string): Promise<boolean> {
  const wanted = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return false; // the process is gone
  }
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return links.includes(wanted);
}

/**
 * The name of the process (among `candidates`, name -> pid) that dialed a connection we
 * accepted: its socket has local port `dialerPort` (our socket's remotePort) and peer port
 * `acceptPort` (the port we listen on). `gone` when the dialer's socket no longer exists (its
 * process was killed right after dialing, before the first look or while no candidate was found
 * holding it); undefined when the socket still exists and no candidate holds it.
 */
export async function identifyDialer(
  dialerPort: number,
  acceptPort: number,
  candidates: ReadonlyMap<string, number>,
): Promise<string | 'gone' | undefined> {
  const inode = await findSocketInode(dialerPort, acceptPort);
  if (inode === undefined) return 'gone';
  for (const [name, pid] of candidates) {
    if (await processHoldsSocket(pid, inode)) return name;
  }
  // The dialer may have been killed between the two looks: its exit closed the socket, which is
  // then gone from the table (or no longer that inode).
  return (await findSocketInode(dialerPort, acceptPort)) === inode ? undefined : 'gone';
}
