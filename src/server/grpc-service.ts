/**
 * gRPC service definitions built from the protobufjs reflection of our .proto files. A request
 * deserialises to `{ raw, message }`: the decoded message for validation and reads, and the exact
 * bytes, which a write carries into the Raft log without re-encoding.
 *
 * A unary request that does not decode is refused by grpc-js itself (INTERNAL, "Error
 * deserializing request", as Go's gRPC refuses it in etcd). A frame of a client stream that does
 * not decode is handed to the handler as a `MalformedFrame` instead: grpc-js would send the status
 * behind the handler's back, and a handler still writing to the stream then kept the call from
 * ever ending (the client hung until its deadline). The handler ends the stream with the frame's
 * error, through the same path as its other failures.
 */
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { etcdService } from '../etcd-proto.js';
import { type DkvError, dkvError } from '../errors.js';

export interface Incoming<T> {
  readonly raw: Buffer;
  readonly message: T;
}

/** A client-stream frame that is not a valid request message (`error`: `malformed-request`). */
export interface MalformedFrame {
  readonly raw: Buffer;
  readonly message: undefined;
  readonly error: DkvError;
}

/** What a client stream's handler reads: a decoded request, or a frame that did not decode. */
export type StreamFrame<T> = Incoming<T> | MalformedFrame;

export function isMalformedFrame<T>(frame: StreamFrame<T>): frame is MalformedFrame {
  return (frame as Partial<MalformedFrame>).error !== undefined;
}

function decodeFrame(type: protobuf.Type, raw: Buffer): StreamFrame<unknown> {
  try {
    return { raw, message: type.decode(raw) as unknown };
  } catch (error) {
    return { raw, message: undefined, error: dkvError('malformed-request', `not a valid ${type.name}: ${error instanceof Error ? error.message : String(error)}`) };
  }
}

export type ServiceDefinition = grpc.ServiceDefinition<grpc.UntypedServiceImplementation>;

/** A unary response already encoded (one a replica answered for a forwarded call): sent as is. */
export class RawResponse {
  constructor(readonly bytes: Buffer) {}
}

export function serviceDefinition(fullName: string, root?: protobuf.Root): ServiceDefinition {
  const service: protobuf.Service = root === undefined ? etcdService(fullName) : root.lookupService(fullName);
  const definition: Record<string, grpc.MethodDefinition<Incoming<unknown>, object>> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const requestType = method.resolvedRequestType!;
    const responseType = method.resolvedResponseType!;
    definition[method.name] = {
      path: `/${fullName}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: (value: Incoming<unknown>) => value.raw,
      requestDeserialize:
        method.requestStream === true ? (raw: Buffer) => decodeFrame(requestType, raw) : (raw: Buffer) => ({ raw, message: requestType.decode(raw) as unknown }),
      responseSerialize: (value: object) => (value instanceof RawResponse ? value.bytes : Buffer.from(responseType.encode(value).finish())),
      responseDeserialize: (raw: Buffer) => responseType.decode(raw) as object,
      originalName: method.name,
    };
  }
  return definition as ServiceDefinition;
}
