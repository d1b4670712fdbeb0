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

  it('has no quantiles when empty', () => {
    const empty = new RunningStats();
    expect(empty.quantile(0.5)).toBeNaN();
    expect(empty.quantiles([0.05, 0.95]).every(Number.isNaN)).toBe(true);
    expect(empty.mean).toBeNaN();
  });
});
