/**
 * A crash image of a live LevelDB directory: the files as one instant left them. LevelDB's own
 * thread may flush its memtable or compact while the files are copied (a new table appears, the old
 * log is deleted), so a plain recursive copy can miss a file or mix two instants. This copies until
 * no file was added, removed, replaced or changed (name, inode, size, mtime in ns) between the listing before the
 * copy and the one after it; such a copy holds exactly what the disk held during it.
 */
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** How many times the copy is taken again before the directory is judged never quiet. */
const COPY_ATTEMPTS_MAX = 100;

function listing(dir: string): string | undefined {
  try {
    return readdirSync(dir)
      .sort()
      .map((name) => {
        const st = statSync(join(dir, name), { bigint: true });
        return `${name}:${st.ino}:${st.size}:${st.mtimeNs}`;
      })
      .join('\n');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // a file went between readdir and stat
    throw error;
  }
}

export function crashImage(from: string, to: string): void {
  for (let attempt = 0; attempt < COPY_ATTEMPTS_MAX; attempt++) {
    rmSync(to, { recursive: true, force: true });
    mkdirSync(to, { recursive: true });
    const before = listing(from);
    if (before === undefined) continue;
    let copied = true;
    for (const name of readdirSync(from)) {
      try {
        copyFileSync(join(from, name), join(to, name));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        copied = false;
        break;
      }
    }
    if (copied && listing(from) === before) return;
  }
  throw new Error(`crash image of ${from}: the directory changed during each of ${COPY_ATTEMPTS_MAX} copies`);
}
