/** A push-to-pull bridge: producers push items, a `for await` consumer pulls them. */

/** An async iterator fed by `push`, ended by `end` or `fail`. */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiter: { resolve(result: IteratorResult<T>): void; reject(error: unknown): void } | undefined;
  private failure: { readonly error: unknown } | undefined;
  private ended = false;

  /** `onReturn` runs when the consumer stops early (break, return, throw). */
  constructor(private readonly onReturn: () => void = () => {}) {}

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
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
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
    this.onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
