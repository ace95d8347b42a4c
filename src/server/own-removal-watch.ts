/**
 * How a member that removed itself learns that it is done. The others stop replicating to it once
 * they apply its removal, so it may never apply the meta shard's change itself: it asks its peers'
 * member lists (the peer port's cluster query) instead. A watch asks every `pollMs` for at most
 * `watchMs`, one at a time; once it ends (the member learnt of its removal, the node stops, or
 * the time is up) a later self-removal starts another. A MemberRemove whose proposal failed here
 * asks once. Whichever hears it first, the member stops as a removed member.
 */
import { assert } from '../../raft/index.js';

export interface OwnRemovalWatchHost {
  /** Whether a peer's member list says this member was removed (rejects when none answers). */
  peersSayRemoved(): Promise<boolean>;
  /** Nothing is left to watch for: the node stops, or it knows it was removed. */
  over(): boolean;
  /** A peer's member list says this member was removed: the node stops as a removed member. */
  removed(): void;
  now(): number;
  /** Runs `task` once, `ms` from now (a timer that never holds the process up). */
  after(ms: number, task: () => void): void;
  readonly pollMs: number;
  readonly watchMs: number;
}

export class OwnRemovalWatch {
  private watching = false;

  constructor(private readonly host: OwnRemovalWatchHost) {
    assert(host.pollMs > 0 && host.watchMs >= host.pollMs, 'an own-removal watch polls at least once');
  }

  /** A watch is running. */
  get active(): boolean {
    return this.watching;
  }

  /** Starts a watch unless one is running. */
  start(): void {
    if (this.watching) return;
    this.watching = true;
    const deadline = this.host.now() + this.host.watchMs;
    const poll = (): void => {
      if (this.host.over() || this.host.now() > deadline) {
        this.watching = false;
        return;
      }
      this.host.peersSayRemoved().then(
        (says) => {
          if (!says) {
            this.host.after(this.host.pollMs, poll);
            return;
          }
          this.watching = false;
          this.host.removed();
        },
        () => this.host.after(this.host.pollMs, poll),
      );
    };
    this.host.after(this.host.pollMs, poll);
  }

  /** Asks the peers once; when one says this member was removed, it stops as removed. False when none answers. */
  async askOnce(): Promise<boolean> {
    const says = await this.host.peersSayRemoved().catch(() => false);
    if (says) this.host.removed();
    return says;
  }
}
