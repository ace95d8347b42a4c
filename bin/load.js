// Loads one of DKV's modules for the bin/ entries. An installed package runs the compiled build
// (dist/); a checkout with DKV_FROM_SOURCE=1 (the test suite sets it) or without a build yet runs
// the TypeScript sources through tsx, a development dependency.
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url);

/** The module at `path` (package-relative, no extension: 'src/cli/main'). */
export async function load(path) {
  const built = new URL(`dist/${path}.js`, root);
  if (process.env.DKV_FROM_SOURCE !== '1' && existsSync(built)) return import(built.href);
  let api;
  try {
    api = await import('tsx/esm/api');
  } catch {
    process.stderr.write(`dkv: ${built.pathname} is missing and tsx is not installed to run the sources; run "npm run build"\n`);
    process.exit(1);
  }
  api.register();
  return import(new URL(`${path}.ts`, root).href);
}
