/**
 * gRPC service definitions built from the protobufjs reflection of our .proto files. A request
 * deserialises to `{ raw, message }`: the decoded message for validation and reads, and the exact
 * bytes, which a write carries into the Raft log without re-encoding.
 */
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { etcdService } from '../etcd-proto.js';

export interface Incoming<T> {
  readonly raw: Buffer;
  readonly message: T;
}

export type ServiceDefinition = grpc.ServiceDefinition<grpc.UntypedServiceImplementation>;

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
      requestDeserialize: (raw: Buffer) => ({ raw, message: requestType.decode(raw) as unknown }),
      responseSerialize: (value: object) => Buffer.from(responseType.encode(value).finish()),
      responseDeserialize: (raw: Buffer) => responseType.decode(raw) as object,
      originalName: method.name,
    };
  }
  return definition as ServiceDefinition;
}
