/**
 * Our v3lockpb and v3electionpb protos against etcd's (3.4, transcribed below: the etcd3 npm
 * client ships no copy of them): every service, method, message, field number, name and type.
 */
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { etcdRoot } from '../../src/etcd-proto.js';

/** etcd's messages: field number → "name type". */
const messages: Record<string, Record<number, string>> = {
  'v3lockpb.LockRequest': { 1: 'name bytes', 2: 'lease int64' },
  'v3lockpb.LockResponse': { 1: 'header etcdserverpb.ResponseHeader', 2: 'key bytes' },
  'v3lockpb.UnlockRequest': { 1: 'key bytes' },
  'v3lockpb.UnlockResponse': { 1: 'header etcdserverpb.ResponseHeader' },
  'v3electionpb.CampaignRequest': { 1: 'name bytes', 2: 'lease int64', 3: 'value bytes' },
  'v3electionpb.CampaignResponse': { 1: 'header etcdserverpb.ResponseHeader', 2: 'leader v3electionpb.LeaderKey' },
  'v3electionpb.LeaderKey': { 1: 'name bytes', 2: 'key bytes', 3: 'rev int64', 4: 'lease int64' },
  'v3electionpb.LeaderRequest': { 1: 'name bytes' },
  'v3electionpb.LeaderResponse': { 1: 'header etcdserverpb.ResponseHeader', 2: 'kv mvccpb.KeyValue' },
  'v3electionpb.ResignRequest': { 1: 'leader v3electionpb.LeaderKey' },
  'v3electionpb.ResignResponse': { 1: 'header etcdserverpb.ResponseHeader' },
  'v3electionpb.ProclaimRequest': { 1: 'leader v3electionpb.LeaderKey', 2: 'value bytes' },
  'v3electionpb.ProclaimResponse': { 1: 'header etcdserverpb.ResponseHeader' },
};

/** etcd's methods: "request -> response", a leading "stream " for a server stream. */
const services: Record<string, Record<string, string>> = {
  'v3lockpb.Lock': {
    Lock: 'v3lockpb.LockRequest -> v3lockpb.LockResponse',
    Unlock: 'v3lockpb.UnlockRequest -> v3lockpb.UnlockResponse',
  },
  'v3electionpb.Election': {
    Campaign: 'v3electionpb.CampaignRequest -> v3electionpb.CampaignResponse',
    Proclaim: 'v3electionpb.ProclaimRequest -> v3electionpb.ProclaimResponse',
    Leader: 'v3electionpb.LeaderRequest -> v3electionpb.LeaderResponse',
    Observe: 'v3electionpb.LeaderRequest -> stream v3electionpb.LeaderResponse',
    Resign: 'v3electionpb.ResignRequest -> v3electionpb.ResignResponse',
  },
};

const strip = (name: string): string => name.replace(/^\./, '');

describe('v3lockpb and v3electionpb protos', () => {
  it('define etcd\'s messages field for field, and nothing more', () => {
    for (const [name, fields] of Object.entries(messages)) {
      const type = etcdRoot().lookupType(name);
      const ours: Record<number, string> = {};
      for (const field of type.fieldsArray) {
        expect(field.repeated, `${name}.${field.name}`).toBe(false);
        ours[field.id] = `${field.name} ${field.resolvedType === null ? field.type : strip(field.resolvedType.fullName)}`;
      }
      expect(ours, name).toEqual(fields);
    }
    const declared = (pkg: string): string[] =>
      (etcdRoot().lookup(pkg) as protobuf.Namespace).nestedArray.filter((o) => o instanceof protobuf.Type).map((o) => strip(o.fullName));
    expect([...declared('v3lockpb'), ...declared('v3electionpb')].sort()).toEqual(Object.keys(messages).sort());
  });

  it('define etcd\'s services and methods', () => {
    for (const [name, methods] of Object.entries(services)) {
      const service = etcdRoot().lookupService(name);
      const ours: Record<string, string> = {};
      for (const method of service.methodsArray) {
        method.resolve();
        expect(method.requestStream === true, `${name}.${method.name}`).toBe(false);
        ours[method.name] = `${strip(method.resolvedRequestType!.fullName)} -> ${method.responseStream === true ? 'stream ' : ''}${strip(method.resolvedResponseType!.fullName)}`;
      }
      expect(ours, name).toEqual(methods);
    }
  });
});
