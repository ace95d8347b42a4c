/**
 * The priority server list: which configured server the client uses. Pure (time is passed in),
 * so its choices are property-tested without a network.
 *
 * Priorities: a higher number is preferred; servers of equal priority are preferred in the order
 * they were configured. A server is *available* until a call to it fails at the connection level;
 * it is available again once a health probe (or a call) succeeds.
 */

/** What the selection needs to know of one server. */
export interface ServerCandidate {
  readonly priority: number;
  readonly available: boolean;
}

/**
 * The index of the server to use: the available one of highest priority, the first configured
 * among equals; undefined when none is available.
 */
export function preferredServer(servers: readonly ServerCandidate[]): number | undefined {
  let best: number | undefined;
  for (let i = 0; i < servers.length; i++) {
    const server = servers[i]!;
    if (!server.available) continue;
    if (best === undefined || server.priority > servers[best]!.priority) best = i;
  }
  return best;
}

/** Indexes of all servers, most preferred first (availability ignored): the order to try when none is available. */
export function serversByPreference(servers: readonly ServerCandidate[]): number[] {
  return servers.map((_, i) => i).sort((a, b) => servers[b]!.priority - servers[a]!.priority || a - b);
}

/** True when server `candidate` is preferred over server `current`. */
export function isPreferredOver(servers: readonly ServerCandidate[], candidate: number, current: number | undefined): boolean {
  if (current === undefined) return true;
  const a = servers[candidate]!;
  const b = servers[current]!;
  return a.priority > b.priority || (a.priority === b.priority && candidate < current);
}

/** `host:port` of a client URL (`http://host:port`, `https://host:port/`, or `host:port`). */
export function hostPort(url: string): string {
  const withoutScheme = url.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  return withoutScheme.replace(/\/.*$/, '');
}
