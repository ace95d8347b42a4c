/** The control plane's errors: a stable code per problem; the CLI prints the message and exits 1. */

export type InstanceErrorCode =
  | 'bad-name'
  | 'exists'
  | 'not-found'
  | 'bad-template'
  | 'bad-option'
  | 'bad-config'
  | 'port-taken'
  | 'port-claimed'
  | 'running'
  | 'start-failed'
  | 'stop-timeout';

export class InstanceError extends Error {
  override readonly name = 'InstanceError';
  constructor(
    readonly code: InstanceErrorCode,
    message: string,
  ) {
    super(message);
  }
}
