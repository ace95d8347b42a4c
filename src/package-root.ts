/**
 * Where the package's files are, whether this code runs from its TypeScript sources (`src/…`,
 * through tsx or vitest) or from the compiled build (`dist/src/…`): the protos, `bin/`, and
 * package.json are found from here, never relative to the running module.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** True when this module is the compiled build under dist/. */
export const runsCompiled = !import.meta.url.endsWith('.ts');

/** The package's root folder (the one holding package.json, bin/, proto/ and dist/). */
export const packageRoot = runsCompiled ? join(here, '..', '..') : join(here, '..');

/** The `dkv` command's entry (bin/dkv.js); children started with it run the same build as this process. */
export const dkvBin = join(packageRoot, 'bin', 'dkv.js');
