// Compiles malloc-trim.c into dist/native/malloc-trim.node (run by `npm run build`). The addon is
// optional: without a C compiler, or off glibc, this prints why and exits 0, and dkv servers run
// without trimming (the server says so at start-up: src/server/malloc-trim.ts).
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('malloc-trim.c', import.meta.url));
const outDir = fileURLToPath(new URL('../../dist/native/', import.meta.url));
const out = `${outDir}malloc-trim.node`;
const skip = (why) => {
  rmSync(out, { force: true });
  process.stderr.write(`dkv build: malloc_trim addon not built (${why}); dkv servers will not hand freed heap memory back to the system\n`);
};

const glibc = process.platform === 'linux' && process.report?.getReport().header.glibcVersionRuntime !== undefined;
if (!glibc) {
  skip('not glibc');
} else {
  const compiler = process.env.CC || 'cc';
  mkdirSync(outDir, { recursive: true });
  const partial = `${out}.${process.pid}`;
  const result = spawnSync(compiler, ['-O2', '-shared', '-fPIC', '-fvisibility=hidden', '-Wall', '-Werror', '-o', partial, source], { encoding: 'utf8' });
  if (result.error !== undefined) skip(`${compiler}: ${result.error.message}`);
  else if (result.status !== 0) {
    rmSync(partial, { force: true });
    skip(`${compiler} failed: ${result.stderr.trim().split('\n').slice(0, 3).join(' / ')}`);
  } else renameSync(partial, out);
}
