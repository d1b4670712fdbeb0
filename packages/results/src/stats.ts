/**
 * Streaming statistics for the aggregator: exact count/mean/std (Welford, float64) and quantiles from a mergeable
 * log-bucket sketch (DDSketch, Masson et al. 2019) with relative accuracy `alpha`: memory is bounded by the dynamic
 * range of the values, not their number, and the result does not depend on the order values arrive in.
 */

/** Relative accuracy of reported quantiles. @defaultValue 0.005 */
export const DEFAULT_QUANTILE_ACCURACY = 0.005;

export class RunningStats {
  count = 0;
  private mean_ = 0;
  private m2 = 0;
  private zeros = 0;
  private readonly positive = new Map<number, number>();
  private readonly negative = new Map<number, number>();
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
    const store = v > 0 ? this.positive : this.negative;
    store.set(key, (store.get(key) ?? 0) + 1);
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
    const negKeys = [...this.negative.keys()].sort((a, b) => b - a);
    const posKeys = [...this.positive.keys()].sort((a, b) => a - b);
    return qs.map((q) => {
      const rank = q * (this.count - 1);
      let seen = 0;
      for (const k of negKeys) {
        seen += this.negative.get(k)!;
        if (seen > rank) return -value(k);
      }
      seen += this.zeros;
      if (seen > rank) return 0;
      for (const k of posKeys) {
        seen += this.positive.get(k)!;
        if (seen > rank) return value(k);
      }
      return value(posKeys[posKeys.length - 1]!);
    });
  }
}
