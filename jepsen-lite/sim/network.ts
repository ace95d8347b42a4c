/**
 * The simulated network: per directed link it can be cut (partitions, symmetric or one-way);
 * globally it drops, duplicates and delays messages (random delays reorder them).
 */
import type { SeededPrng } from '../../raft/index.js';

export interface NetworkParams {
  /** Probability that a message is lost. */
  readonly dropRate: number;
  /** Probability that a message is delivered twice. */
  readonly duplicateRate: number;
  /** Delivery delay in simulated milliseconds, uniform in [min, max]. */
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
}

export const QUIET_NETWORK: NetworkParams = Object.freeze({ dropRate: 0, duplicateRate: 0, delayMinMs: 1, delayMaxMs: 5 });
export const ZERO_LATENCY_NETWORK: NetworkParams = Object.freeze({ dropRate: 0, duplicateRate: 0, delayMinMs: 0, delayMaxMs: 0 });

export class SimNetwork {
  params: NetworkParams;
  /** Cut directed links, as "from>to". */
  private readonly cut = new Set<string>();

  constructor(
    private readonly random: SeededPrng,
    params: NetworkParams,
  ) {
    this.params = params;
  }

  isCut(from: number, to: number): boolean {
    return this.cut.size > 0 && this.cut.has(`${from}>${to}`);
  }

  cutLink(from: number, to: number): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Splits the nodes into groups that cannot talk across (a symmetric partition). */
  partition(groups: readonly (readonly number[])[]): void {
    for (let a = 0; a < groups.length; a++) {
      for (let b = 0; b < groups.length; b++) {
        if (a === b) continue;
        for (const from of groups[a]!) for (const to of groups[b]!) this.cutLink(from, to);
      }
    }
  }

  heal(): void {
    this.cut.clear();
  }

  describeCuts(): string {
    return [...this.cut].sort().join(' ');
  }

  /**
   * The delivery delays for one message: empty when it is dropped, two when duplicated. Draws
   * a fixed number of random values per message so a change in one parameter does not shift
   * every later draw.
   */
  deliveries(): number[] {
    const p = this.params;
    const dropDraw = this.random.nextFloat();
    const duplicateDraw = this.random.nextFloat();
    const span = p.delayMaxMs - p.delayMinMs + 1;
    const delay1 = p.delayMinMs + this.random.nextInt(span);
    const delay2 = p.delayMinMs + this.random.nextInt(span);
    if (dropDraw < p.dropRate) return [];
    if (duplicateDraw < p.duplicateRate) return [delay1, delay2];
    return [delay1];
  }
}
