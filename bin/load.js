// Loads one of DKV's modules for the bin/ entries. An installed package runs the compiled build
// (dist/). A checkout runs the build too, unless DKV_FROM_SOURCE=1 (to force the sources), there
// is no build yet, or a source file changed after the last build: then it runs the TypeScript
// sources through tsx, a development dependency, so a checkout never runs stale code.
import { existsSync, readdirSync, statSync } from 'node:fs';

const root = new URL('..', import.meta.url);
/** The folders the build compiles (tsconfig.build.json). */
const sourceFolders = ['src', 'raft', 'storage', 'jepsen-lite', 'bench'];

/** The newest modification time of a .ts file under `dir` (ms). */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Why the build cannot be used, or undefined when it can (the benches ask too: they measure the build). */
export function buildUnusable() {
  if (process.env.DKV_FROM_SOURCE === '1') return 'DKV_FROM_SOURCE=1';
  const info = new URL('dist/.tsbuildinfo', root);
  if (!existsSync(new URL('dist/src/cli/main.js', root))) return 'no build';
  // An installed package ships no sources (and no .tsbuildinfo): its build is all there is.
  if (!existsSync(new URL('src/cli/main.ts', root)) || !existsSync(info)) return undefined;
  const built = statSync(info).mtimeMs;
  for (const folder of sourceFolders) {
    const dir = new URL(folder, root).pathname;
    if (existsSync(dir) && newestSource(dir) > built) return 'stale';
  }
  return undefined;
}

/** The module at `path` (package-relative, no extension: 'src/cli/main'). */
export async function load(path) {
  const unusable = buildUnusable();
  if (unusable === undefined) return import(new URL(`dist/${path}.js`, root).href);
  let api;
  try {
    api = await import('tsx/esm/api');
  } catch {
    process.stderr.write(`dkv: the build in dist/ is ${unusable === 'stale' ? 'older than the sources' : 'missing'} and tsx is not installed to run the sources; run "npm run build"\n`);
    process.exit(1);
  }
  api.register();
  return import(new URL(`${path}.ts`, root).href);
}
