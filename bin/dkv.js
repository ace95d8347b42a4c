#!/usr/bin/env node
// The `dkv` command: the compiled build in dist/ (see load.js for running the sources).
import { load } from './load.js';

const { main } = await load('src/cli/main');
process.exitCode = await main(process.argv.slice(2));
