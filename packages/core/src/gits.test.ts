import { describe, expect, it } from 'vitest';
import { gitsDynamicProgram, gitsPathCost } from './gits.js';
import { uniformStream } from './rng.js';
import { timeUniformSigmas } from './schedules.js';

/** Every increasing path 0 < ... < N-1 with `steps` steps, by brute force. */
function* paths(N: number, steps: number, from = 0, acc: number[] = [0]): Generator<number[]> {
  if (acc.length === steps) {
    yield [...acc, N - 1];
    return;
  }
  for (let i = from + 1; i < N - 1; i++) yield* paths(N, steps, i, [...acc, i]);
}

describe('GITS dynamic program', () => {
  it('equals brute-force search on random cost matrices', () => {
    for (let trial = 0; trial < 30; trial++) {
      const N = 5 + (trial % 5);
      const u = uniformStream(trial, 7, N * N);
      const cost = Float64Array.from(u, (v) => v * 10);
      for (const steps of [1, 2, 3, N - 1]) {
        for (const gamma of [0.8, 1, 1.15]) {
          let best = Infinity;
          for (const p of paths(N, steps)) best = Math.min(best, gitsPathCost(cost, N, p, gamma));
          const dp = gitsDynamicProgram(cost, N, steps, gamma);
          expect(dp).toHaveLength(steps + 1);
          expect(dp[0]).toBe(0);
          expect(dp[steps]).toBe(N - 1);
          for (let m = 1; m <= steps; m++) expect(dp[m]!).toBeGreaterThan(dp[m - 1]!);
          expect(gitsPathCost(cost, N, dp, gamma)).toBeCloseTo(best, 10);
        }
      }
    }
  });

  it('refuses impossible step counts', () => {
    expect(() => gitsDynamicProgram(new Float64Array(16), 4, 4, 1)).toThrow(/steps <= 3/);
  });
});

describe('time-uniform schedule', () => {
  it('is uniform in VP time for rho = 1 and spans [sigmaMin, sigmaMax]', () => {
    const s = timeUniformSigmas(8, 0.002, 80, 1);
    expect(s[0]).toBe(80);
    expect(s[8]).toBe(0.002);
    for (let i = 1; i < 9; i++) expect(s[i]!).toBeLessThan(s[i - 1]!);
    // the VP time of each point: equal spacing
    const eps = 1e-3;
    const bd = (2 * (Math.log(0.002 ** 2 + 1) / eps - Math.log(80 ** 2 + 1))) / (eps - 1);
    const bm = Math.log(80 ** 2 + 1) - 0.5 * bd;
    const tau = s.map((v) => (Math.sqrt(bm * bm + 2 * bd * Math.log(v * v + 1)) - bm) / bd);
    for (let i = 1; i < 9; i++) expect(tau[i - 1]! - tau[i]!).toBeCloseTo((1 - eps) / 8, 8);
  });
});
