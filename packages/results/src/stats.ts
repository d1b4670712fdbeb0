/**
 * Streaming statistics for the aggregator: exact count/mean/std (Welford, float64) and quantiles from a mergeable
 * log-bucket sketch (DDSketch, Masson et al. 2019) with relative accuracy `alpha`: memory is bounded by the dynamic
 * range of the values (~230 buckets per decade they span), and by a small multiple of their number when they are few
 * and spread wide (see Buckets); the result does not depend on the order values arrive in.
 */

/** Relative accuracy of reported quantiles. @defaultValue 0.005 */
export const DEFAULT_QUANTILE_ACCURACY = 0.005;

/**
 * Bucket counts by integer key: a dense window of counts while the keys seen span little more than their number
 * (adding to it is an array increment), else a Map (a few heavy-tailed values over many decades). Memory stays within
 * a small multiple of the values counted either way.
 */
class Buckets {
  private dense: Float64Array | null = new Float64Array(0);
  /** The key of dense[0]. */
  private offset = 0;
  private sparse: Map<number, number> | null = null;
  private counted = 0;
  /** The smallest and largest keys counted. */
  private lo = Infinity;
  private hi = -Infinity;

  add(key: number): void {
    this.counted++;
    if (key < this.lo) this.lo = key;
    if (key > this.hi) this.hi = key;
    const dense = this.dense;
    if (dense) {
      const i = key - this.offset;
      if (i >= 0 && i < dense.length) {
        dense[i] = dense[i]! + 1;
        return;
      }
    }
    // outside the window, or counted in a Map: the window is rebuilt around every key so far while they span at most
    // twice the values counted (plus 64), else the Map takes them
    if (this.hi - this.lo + 1 <= 2 * this.counted + 64) {
      this.rebuild();
      this.dense![key - this.offset]! += 1;
      return;
    }
    if (!this.sparse) {
      this.sparse = new Map<number, number>();
      this.dense!.forEach((n, i) => n > 0 && this.sparse!.set(i + this.offset, n));
      this.dense = null;
    }
    this.sparse.set(key, (this.sparse.get(key) ?? 0) + 1);
  }

  /** A window over the keys lo..hi with room on both sides, holding the counts so far. */
  private rebuild(): void {
    const span = this.hi - this.lo + 1;
    const room = Math.max(8, span >> 1);
    const next = new Float64Array(span + 2 * room);
    const offset = this.lo - room;
    if (this.dense) {
      if (this.dense.length) next.set(this.dense, this.offset - offset);
    } else this.sparse!.forEach((n, k) => (next[k - offset] = n));
    this.dense = next;
    this.offset = offset;
    this.sparse = null;
  }

  /** The keys with a count, in ascending (or descending) order. */
  keys(descending: boolean): number[] {
    let keys: number[];
    if (this.sparse) keys = [...this.sparse.keys()].sort((a, b) => a - b);
    else {
      keys = [];
      this.dense!.forEach((n, i) => n > 0 && keys.push(i + this.offset));
    }
    return descending ? keys.reverse() : keys;
  }

  count(key: number): number {
    return this.sparse ? this.sparse.get(key)! : this.dense![key - this.offset]!;
  }
}

export class RunningStats {
  count = 0;
  private mean_ = 0;
  private m2 = 0;
  private zeros = 0;
  private readonly positive = new Buckets();
  private readonly negative = new Buckets();
  private readonly logGamma: number;
  private readonly gamma: number;

  constructor(alpha = DEFAULT_QUANTILE_ACCURACY) {
    this.gamma = (1 + alpha) / (1 - alpha);
    this.logGamma = Math.log(this.gamma);
  }

  /** Adds a value; NaN (null) is ignored. */
  add(v: number): void {
    if (Number.isNaN(v)) return;
    this.count++;
    const delta = v - this.mean_;
    this.mean_ += delta / this.count;
    this.m2 += delta * (v - this.mean_);
    const a = Math.abs(v);
    if (a < 1e-300) {
      this.zeros++;
      return;
    }
    const key = Math.ceil(Math.log(a) / this.logGamma);
    (v > 0 ? this.positive : this.negative).add(key);
  }

  get mean(): number {
    return this.count > 0 ? this.mean_ : Number.NaN;
  }

  /** Sample standard deviation (n - 1); 0 for a single value. */
  get std(): number {
    if (this.count === 0) return Number.NaN;
    return this.count > 1 ? Math.sqrt(this.m2 / (this.count - 1)) : 0;
  }

  /** q-quantile (0..1) within the sketch's relative accuracy; NaN when empty. */
  quantile(q: number): number {
    return this.quantiles([q])[0]!;
  }

  /** The q-quantiles of `qs`, each as quantile(q) gives it, with the sketch's buckets sorted once for all of them. */
  quantiles(qs: readonly number[]): number[] {
    if (this.count === 0) return qs.map(() => Number.NaN);
    const value = (key: number) => (2 * this.gamma ** key) / (this.gamma + 1);
    const negKeys = this.negative.keys(true);
    const posKeys = this.positive.keys(false);
    return qs.map((q) => {
      const rank = q * (this.count - 1);
      let seen = 0;
      for (const k of negKeys) {
        seen += this.negative.count(k);
        if (seen > rank) return -value(k);
      }
      seen += this.zeros;
      if (seen > rank) return 0;
      for (const k of posKeys) {
        seen += this.positive.count(k);
        if (seen > rank) return value(k);
      }
      return value(posKeys[posKeys.length - 1]!);
    });
  }
}
