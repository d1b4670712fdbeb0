import { describe, expect, it } from 'vitest';
import { buildSigmas, checkSigmas, logSnrSigmas, polynomialSigmas } from './schedules.js';

describe('schedules', () => {
  it('polynomial (EDM, rho 7) matches the contract example for S = 6', () => {
    const s = polynomialSigmas(6, 0.002, 80, 7);
    const expected = [80, 30.1833, 9.7232, 2.5152, 0.47, 0.0515, 0.002];
    expect(s).toHaveLength(7);
    s.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
  });

  it('logsnr is geometric and matches the contract example for S = 6', () => {
    const s = logSnrSigmas(6, 0.002, 80);
    const expected = [80, 13.6798, 2.3392, 0.4, 0.0684, 0.0117, 0.002];
    s.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
    for (let i = 1; i < 6; i++) expect(s[i]! / s[i - 1]!).toBeCloseTo(s[i + 1]! / s[i]!, 12);
  });

  it('custom sigmas are validated', () => {
    expect(buildSigmas('custom', { steps: 2, sigmaMin: 0, sigmaMax: 0, sigmas: [10, 1, 0.1] })).toEqual([10, 1, 0.1]);
    expect(() => buildSigmas('custom', { steps: 2, sigmaMin: 0, sigmaMax: 0, sigmas: [10, 10, 0.1] })).toThrow(/strictly decrease/);
    expect(checkSigmas([1, -1])).toMatch(/positive/);
    expect(checkSigmas([1])).toMatch(/at least 2/);
  });
});
