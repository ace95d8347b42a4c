/**
 * grpc-js, loaded on first use rather than when the client is imported: what imports the client
 * and never makes a call (`dkv --help`, a usage error) skips its load, tens of milliseconds of
 * start-up (test/cli/lazy-load.test.ts). A CommonJS require, so that it is synchronous like the
 * constructors that need it; it returns the same module instance an `import` gets. For types,
 * `import type * as grpc from '@grpc/grpc-js'`.
 */
import { createRequire } from 'node:module';
import type * as grpc from '@grpc/grpc-js';

let loaded: typeof grpc | undefined;

export function grpcJs(): typeof grpc {
  loaded ??= createRequire(import.meta.url)('@grpc/grpc-js') as typeof grpc;
  return loaded;
}
