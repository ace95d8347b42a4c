// Compiles malloc-trim.c into dist/native/malloc-trim.node (run by `npm run build`; an installed
// package can run it again: `node node_modules/clustron-dkv/src/native/build.mjs`). The addon is
// optional: without a C compiler, off Linux, on a C library other than glibc (malloc-trim.c does
// not compile there), or on any other failure, this prints why and exits 0, and dkv servers run
// without trimming (they say so at start-up: src/server/malloc-trim.ts).
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** How long the compiler may take. */
const compileTimeoutMs = 120_000;

const source = fileURLToPath(new URL('malloc-trim.c', import.meta.url));
const outDir = fileURLToPath(new URL('../../dist/native/', import.meta.url));
const out = `${outDir}malloc-trim.node`;

function skip(why) {
  try {
    rmSync(out, { force: true });
  } catch {
    // nothing there to keep stale
  }
  process.stderr.write(`dkv build: malloc_trim addon not built (${why}); dkv servers will not hand freed heap memory back to the system\n`);
}

function build() {
  if (process.platform !== 'linux') return skip(`${process.platform} has no glibc`);
  // $CC may carry arguments ("ccache gcc").
  const [compiler, ...compilerArgs] = (process.env.CC || 'cc').trim().split(/\s+/);
  mkdirSync(outDir, { recursive: true });
  const partial = `${out}.${process.pid}`;
  const args = [...compilerArgs, '-O2', '-shared', '-fPIC', '-fvisibility=hidden', '-Wall', '-Werror', '-o', partial, source];
  const result = spawnSync(compiler, args, { encoding: 'utf8', timeout: compileTimeoutMs });
  if (result.error !== undefined || result.status !== 0) {
    rmSync(partial, { force: true });
    const why = result.error !== undefined ? result.error.message : result.stderr.trim().split('\n').slice(0, 3).join(' / ');
    return skip(`${compiler}: ${why}`);
  }
  renameSync(partial, out);
}

try {
  build();
} catch (error) {
  skip(error instanceof Error ? error.message : String(error));
}
