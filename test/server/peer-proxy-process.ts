/**
 * The process that runs the peer proxies of a test (peer-proxy.ts): one per port given as an
 * argument, driven by `ProxyProcess` over IPC. It says it is ready once every proxy listens.
 */
import { type DropRule, type DropSpec, PeerProxy, type ProxyCommand } from './peer-proxy.js';

const targets = new Map<number, number>();
let spec: DropSpec | undefined;
const rule: DropRule = (from, to, shard, message) => spec !== undefined && from === spec.from && to === spec.to && shard === spec.shard && message.type === spec.type;

const proxies = await Promise.all(process.argv.slice(2).map((port, index) => PeerProxy.start(Number(port), () => rule, () => targets.get(index) ?? 0)));
process.on('message', (command: ProxyCommand) => {
  if (command.kind === 'target') targets.set(command.index, command.port);
  else if (command.kind === 'drop') {
    spec = command.spec;
    process.send!(0);
  } else process.send!(proxies.reduce((sum, proxy) => sum + proxy.dropped, 0));
});
// The test's process went away: so does this one.
process.on('disconnect', () => process.exit(0));
process.send!('ready');
