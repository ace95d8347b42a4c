/**
 * Our etcd v3 protos against the ones the `etcd3` npm client ships (taken from etcd itself):
 * every message, field (number, name, type, label), enum value, service and method the client
 * knows must exist in ours identically, or the client could not talk to DKV. Ours may add what
 * newer etcd versions added (etcd3 ships an older copy), but never reuse a number differently.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const theirsDir = join(dirname(require.resolve('etcd3/package.json')), 'proto');
const oursDir = join(import.meta.dirname, '..', '..', 'proto');

/** Loads `file` (relative to `base`), resolving imports relative to `base` too. */
function load(base: string, file: string): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith(base) ? target : join(base, target.replace(/^\.\//, '')));
  root.loadSync(file, { keepCase: true });
  root.resolveAll();
  return root;
}

// etcd3's copies carry grpc-gateway http options whose definitions are not shipped; protobufjs
// keeps unknown options as plain data, so they load without the google/api imports.
const theirs = (): protobuf.Root => load(theirsDir, 'rpc.proto');
const ours = (): protobuf.Root => load(join(oursDir, 'etcd'), 'etcdserverpb/rpc.proto');

function walk(ns: protobuf.NamespaceBase, visit: (o: protobuf.ReflectionObject) => void): void {
  for (const nested of ns.nestedArray) {
    visit(nested);
    if (nested instanceof protobuf.Namespace) walk(nested, visit);
  }
}

describe('etcd v3 protos', () => {
  const a = theirs();
  const b = ours();

  it('define every message field of the etcd3 client identically', () => {
    const problems: string[] = [];
    let fields = 0;
    walk(a, (o) => {
      if (!(o instanceof protobuf.Type)) return;
      const mine = b.lookup(o.fullName);
      if (!(mine instanceof protobuf.Type)) {
        problems.push(`missing message ${o.fullName}`);
        return;
      }
      for (const field of o.fieldsArray) {
        fields++;
        const other = mine.fieldsById[field.id];
        const want = `${field.name} ${field.repeated ? 'repeated ' : ''}${field.resolvedType?.fullName ?? field.type}`;
        const got = other === undefined ? 'nothing' : `${other.name} ${other.repeated ? 'repeated ' : ''}${other.resolvedType?.fullName ?? other.type}`;
        if (want !== got) problems.push(`${o.fullName} field ${field.id}: etcd has ${want}, ours has ${got}`);
      }
      for (const oneof of o.oneofsArray) {
        const other = mine.oneofs?.[oneof.name];
        if (other === undefined || [...other.oneof].sort().join() !== [...oneof.oneof].sort().join()) problems.push(`${o.fullName} oneof ${oneof.name} differs`);
      }
    });
    expect(problems).toEqual([]);
    expect(fields).toBeGreaterThan(200);
  });

  it('define every enum value identically', () => {
    const problems: string[] = [];
    walk(a, (o) => {
      if (!(o instanceof protobuf.Enum)) return;
      const mine = b.lookup(o.fullName);
      if (!(mine instanceof protobuf.Enum)) {
        problems.push(`missing enum ${o.fullName}`);
        return;
      }
      // Names are not on the wire, and etcd3 re-cases them (NOT_EQUAL becomes NotEqual): compare
      // values, with names matched ignoring case and underscores.
      const normal = (name: string): string => name.replace(/_/g, '').toLowerCase();
      const mineByName = new Map(Object.entries(mine.values).map(([name, value]) => [normal(name), value]));
      for (const [name, value] of Object.entries(o.values)) {
        if (mineByName.get(normal(name)) !== value) problems.push(`${o.fullName}.${name}: etcd ${value}, ours ${mineByName.get(normal(name))}`);
      }
    });
    expect(problems).toEqual([]);
  });

  it('define every service method with the same types and streaming', () => {
    const problems: string[] = [];
    let methods = 0;
    walk(a, (o) => {
      if (!(o instanceof protobuf.Service)) return;
      const mine = b.lookup(o.fullName);
      if (!(mine instanceof protobuf.Service)) {
        problems.push(`missing service ${o.fullName}`);
        return;
      }
      for (const method of o.methodsArray) {
        methods++;
        const other = mine.methods[method.name];
        const describe = (m: protobuf.Method | undefined): string =>
          m === undefined ? 'nothing' : `${m.requestStream ? 'stream ' : ''}${m.resolvedRequestType?.fullName} -> ${m.responseStream ? 'stream ' : ''}${m.resolvedResponseType?.fullName}`;
        if (describe(method) !== describe(other)) problems.push(`${o.fullName}.${method.name}: etcd ${describe(method)}, ours ${describe(other)}`);
      }
    });
    expect(problems).toEqual([]);
    expect(methods).toBeGreaterThan(30);
  });
});
