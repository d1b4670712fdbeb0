/**
 * Runs tasks one at a time, in the order they were handed in: a shard process's compute-bound work (building a study's
 * state, sampling a shard), so that a second shard held by the process is checked and uploaded meanwhile but never
 * computes alongside the first.
 */
export class OneAtATime {
  private tail: Promise<unknown> = Promise.resolve();

  /** Resolves with `task`'s result once every task handed in before it has settled and it has run. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => {});
    return result;
  }
}
