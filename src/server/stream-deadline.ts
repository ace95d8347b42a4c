/**
 * A streaming call ends at its deadline, for the handler too.
 *
 * When a stream's `grpc-timeout` passes, grpc-js ends the HTTP/2 stream (DEADLINE_EXCEEDED goes
 * out as trailers once the data already written is flushed) but tells the handler nothing. A
 * handler that writes again then errors the HTTP/2 stream, which never sends its trailers: a
 * client that does not reset the stream itself (grpc-js and Go clients do, at their own
 * deadline; a raw HTTP/2 client need not) waits forever, and the call holds its stream slot and
 * whatever the handler keeps (a snapshot's bytes, a watcher) until the connection goes.
 *
 * So at the deadline the call is treated as cancelled: writes through the call from then on, and
 * messages still queued behind the HTTP/2 stream's flow control, are dropped, the call ends with
 * DEADLINE_EXCEEDED even if its handler had already ended it, and the handler
 * hears `cancelled` as it does when the client cancels. That happens `streamDeadlineLeadMs`
 * before the deadline, so no write can land between it and grpc-js's own deadline timer (the two
 * timers are set from different clocks, which may round apart by a millisecond).
 */
import * as grpc from '@grpc/grpc-js';

const { status } = grpc;

/** How long before a streaming call's deadline its handler is told the call is over. */
export const streamDeadlineLeadMs = 5;

type StreamCall = grpc.ServerWritableStream<unknown, unknown> & { cancelled: boolean };

/** Ends `call` for its handler once its deadline passes (nothing when it has none). */
export function endAtDeadline(call: StreamCall): void {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(deadlineMs)) return;
  let over = false;
  const end = (): void => {
    if (over || call.cancelled) return;
    over = true;
    // Messages still queued in the call (written before, waiting for the HTTP/2 stream) go too.
    (call as unknown as { _write: (chunk: unknown, encoding: unknown, done: () => void) => void })._write = (_chunk, _encoding, done) => done();
    // A handler that already ended the call would otherwise have it end OK with messages missing.
    (call as unknown as { pendingStatus: object }).pendingStatus = { code: status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' };
    call.cancelled = true;
    // grpc-js emits `cancelled` again once the stream closes: handlers take it more than once.
    call.emit('cancelled', 'deadline');
  };
  const leftMs = deadlineMs - Date.now() - streamDeadlineLeadMs;
  if (leftMs <= 0) {
    end();
    return;
  }
  const timer = setTimeout(end, leftMs);
  const settle = (): void => clearTimeout(timer);
  call.once('close', settle);
  call.once('finish', settle);
  call.once('cancelled', settle);
}

/** Wraps every streaming handler of `implementation` so its call ends at its deadline. */
export function withStreamDeadlines(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): grpc.UntypedServiceImplementation {
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const method = definition[name];
    if (method === undefined || (!method.responseStream && !method.requestStream)) {
      wrapped[name] = handler;
      continue;
    }
    const original = handler as (call: StreamCall) => void;
    wrapped[name] = ((call: StreamCall) => {
      original(call);
      endAtDeadline(call);
    }) as grpc.UntypedHandleCall;
  }
  return wrapped;
}
