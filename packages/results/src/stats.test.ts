import { describe, expect, it } from 'vitest';
import { DEFAULT_QUANTILE_ACCURACY, RunningStats } from './stats.js';

/** The exact q-quantile of `values` at the sketch's rank (the value of rank floor(q (n - 1)) in sorted order). */
function exact(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(q * (sorted.length - 1))]!;
}

describe('RunningStats', () => {
  // values of both signs, zeros, over six decades, and a NaN (a null) that is ignored
  const values = Array.from({ length: 2001 }, (_, i) => (i % 7 === 0 ? 0 : (i % 3 === 0 ? -1 : 1) * 10 ** ((i % 600) / 100 - 3) * (1 + (i % 11) / 10)));
  const stats = new RunningStats();
  for (const v of [...values, Number.NaN]) stats.add(v);

  it('gives the mean and sample standard deviation exactly, ignoring NaN', () => {
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1);
    expect(stats.count).toBe(values.length);
    expect(stats.mean).toBeCloseTo(mean, 10);
    expect(stats.std).toBeCloseTo(Math.sqrt(variance), 10);
  });

  it('gives quantiles within its relative accuracy, several at once the same as one by one', () => {
    const qs = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1];
    const together = stats.quantiles(qs);
    qs.forEach((q, i) => {
      expect(together[i]).toBe(stats.quantile(q));
      const want = exact(values, q);
      expect(Math.abs(together[i]! - want), `q ${q}`).toBeLessThanOrEqual(DEFAULT_QUANTILE_ACCURACY * Math.abs(want) * 1.0001);
    });
  });

  it('counts its buckets as a plain map of keys would, in a dense window or a Map as the keys spread', () => {
    const alpha = DEFAULT_QUANTILE_ACCURACY;
    const logGamma = Math.log((1 + alpha) / (1 - alpha));
    /** The sketch's quantile from a plain Map of bucket counts (its definition). */
    const byMap = (vs: number[], q: number) => {
      const pos = new Map<number, number>();
      const neg = new Map<number, number>();
      let zeros = 0;
      for (const v of vs) {
        if (Math.abs(v) < 1e-300) zeros++;
        else {
          const m = v > 0 ? pos : neg;
          const k = Math.ceil(Math.log(Math.abs(v)) / logGamma);
          m.set(k, (m.get(k) ?? 0) + 1);
        }
      }
      const gamma = (1 + alpha) / (1 - alpha);
      const value = (k: number) => (2 * gamma ** k) / (gamma + 1);
      const rank = q * (vs.length - 1);
      let seen = 0;
      for (const k of [...neg.keys()].sort((a, b) => b - a)) if ((seen += neg.get(k)!) > rank) return -value(k);
      if ((seen += zeros) > rank) return 0;
      const keys = [...pos.keys()].sort((a, b) => a - b);
      for (const k of keys) if ((seen += pos.get(k)!) > rank) return value(k);
      return value(keys[keys.length - 1]!);
    };
    const cases = {
      // a few values over 60 decades: the keys stay in a Map
      'heavy-tailed': [1e-30, 5, 2e30, -3e-20, 7e10],
      // wide first, then enough values to fill the range densely: Map first, then a dense window
      'wide, then filled': [1e-6, 1e6, ...Array.from({ length: 3000 }, (_, i) => 10 ** (-6 + (12 * i) / 2999))],
      // narrow, then growing on both sides, window rebuilt again and again
      growing: Array.from({ length: 500 }, (_, i) => (i % 2 ? 1 : -1) * 1.01 ** (i % 2 ? i : -i)),
    };
    for (const [name, vs] of Object.entries(cases)) {
      const st = new RunningStats();
      for (const v of vs) st.add(v);
      const qs = [0, 0.01, 0.05, 0.3, 0.5, 0.7, 0.95, 0.99, 1];
      expect(st.quantiles(qs), name).toEqual(qs.map((q) => byMap(vs, q)));
    }
  });

  it('has no quantiles when empty', () => {
    const empty = new RunningStats();
    expect(empty.quantile(0.5)).toBeNaN();
    expect(empty.quantiles([0.05, 0.95]).every(Number.isNaN)).toBe(true);
    expect(empty.mean).toBeNaN();
  });
});
