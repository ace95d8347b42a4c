/** A push-to-pull bridge: producers push items, a `for await` consumer pulls them. */

/** An async iterator fed by `push`, ended by `end` or `fail`. */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiter: { resolve(result: IteratorResult<T>): void; reject(error: unknown): void } | undefined;
  private failure: { readonly error: unknown } | undefined;
  private ended = false;

  private drainWaiter: { readonly below: number; resolve(): void } | undefined;

  /** `onReturn` runs when the consumer stops early (break, return, throw); `onPull` after each item pulled. */
  constructor(
    private readonly onReturn: () => void = () => {},
    private readonly onPull: () => void = () => {},
  ) {}

  /** Resolves once at most `below` items are buffered (or the queue ended). One waiter at a time. */
  drained(below: number): Promise<void> {
    if (this.items.length <= below || this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      this.drainWaiter = { below, resolve };
    });
  }

  private pulled(): void {
    const waiter = this.drainWaiter;
    if (waiter !== undefined && (this.items.length <= waiter.below || this.ended)) {
      this.drainWaiter = undefined;
      waiter.resolve();
    }
    this.onPull();
  }

  /** Items pushed and not yet pulled. */
  get buffered(): number {
    return this.items.length;
  }

  /** Hands `item` to the consumer (buffered until pulled). */
  push(item: T): void {
    if (this.ended || this.failure !== undefined) return;
    if (this.waiter !== undefined) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve({ value: item, done: false });
    } else this.items.push(item);
  }

  /** Ends after the buffered items. */
  end(): void {
    if (this.ended || this.failure !== undefined) return;
    this.ended = true;
    this.wake();
    this.drainWaiter?.resolve();
    this.drainWaiter = undefined;
  }

  /** Rejects the consumer's next pull after the buffered items. */
  fail(error: unknown): void {
    if (this.ended || this.failure !== undefined) return;
    this.failure = { error };
    this.wake();
  }

  private wake(): void {
    if (this.waiter === undefined || this.items.length > 0) return;
    const waiter = this.waiter;
    this.waiter = undefined;
    if (this.failure !== undefined) waiter.reject(this.failure.error);
    else waiter.resolve({ value: undefined, done: true });
  }

  /** The next item, waiting for one. */
  next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) {
      this.pulled();
      return Promise.resolve({ value: item, done: false });
    }
    if (this.failure !== undefined) {
      const { error } = this.failure;
      this.failure = undefined;
      this.ended = true;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The consumer stopped: drop what is buffered. */
  return(): Promise<IteratorResult<T>> {
    this.items.length = 0;
    this.ended = true;
    this.failure = undefined;
    this.wake();
    this.pulled();
    this.onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
