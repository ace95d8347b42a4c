#!/bin/sh
':' //; if [ "$1" = server ]; then [ -n "${MALLOC_MMAP_THRESHOLD_+set}" ] || export MALLOC_MMAP_THRESHOLD_=65536; [ -n "${MALLOC_ARENA_MAX+set}" ] || export MALLOC_ARENA_MAX=2; case "$NODE_OPTIONS" in *--max[-_]semi[-_]space[-_]size*) ;; *) export NODE_OPTIONS="--max-semi-space-size=8${NODE_OPTIONS:+ $NODE_OPTIONS}" ;; esac; if [ -z "${LD_PRELOAD+set}" ] && [ "${DKV_ALLOCATOR-}" = jemalloc ]; then for j in "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /usr/lib64/libjemalloc.so.2 /usr/lib/libjemalloc.so.2; do if [ -r "$j" ]; then export LD_PRELOAD="$j"; [ -n "${MALLOC_CONF+set}" ] || export MALLOC_CONF=narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true; break; fi; done; fi; fi; exec node "$0" "$@"
// The line above is for sh (node reads it as a string and a comment): `dkv server` run as a
// command gets glibc's mmap threshold and arena limit fixed, V8's semi-space limited
// (NODE_OPTIONS) and, with DKV_ALLOCATOR=jemalloc, jemalloc preloaded when the system has it, as
// `serverProcessEnv` (src/package-root.ts) gives the servers dkv dev, dkv instance and
// jepsen-lite start; exec keeps the process id.
// The `dkv` command: the compiled build in dist/ (see load.js for running the sources).
import { load } from './load.js';

const { main } = await load('src/cli/main');
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  // A failure no command turned into a message (a folder it cannot write, a bug): one line, and
  // the stack when asked for (DKV_DEBUG=1) or from a server (whose operator needs it for a report).
  const command = process.argv[2] === undefined ? 'dkv' : `dkv ${process.argv[2]}`;
  process.stderr.write(`${command}: ${error instanceof Error ? error.message : String(error)}\n`);
  if ((process.env.DKV_DEBUG === '1' || process.argv[2] === 'server') && error instanceof Error && error.stack !== undefined) process.stderr.write(`${error.stack}\n`);
  process.exitCode = 1;
}
