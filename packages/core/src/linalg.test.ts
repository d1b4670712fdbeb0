import { describe, expect, it } from 'vitest';
import { orthonormalizeColumns, symmetricEigen } from './linalg.js';
import { normalStream } from './rng.js';

describe('symmetricEigen', () => {
  it('decomposes a random symmetric matrix: A v = lambda v, V orthonormal, values descending', () => {
    const n = 9;
    const r = normalStream(3, 0, n * n);
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = r[i * n + j]! + r[j * n + i]!;
    const { values, vectors } = symmetricEigen(a, n);
    for (let k = 0; k + 1 < n; k++) expect(values[k]!).toBeGreaterThanOrEqual(values[k + 1]!);
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let j = 0; j < n; j++) av += a[i * n + j]! * vectors![j * n + k]!;
        expect(av).toBeCloseTo(values[k]! * vectors![i * n + k]!, 10);
      }
      for (let l = 0; l < n; l++) {
        let dot = 0;
        for (let i = 0; i < n; i++) dot += vectors![i * n + k]! * vectors![i * n + l]!;
        expect(dot).toBeCloseTo(k === l ? 1 : 0, 10);
      }
    }
  });

  it('recovers a known spectrum', () => {
    const n = 5;
    const q = normalStream(4, 0, n * n);
    orthonormalizeColumns(q, n, n);
    const lambda = [5, 3, 2, 0.5, 0];
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) a[i * n + j] = a[i * n + j]! + q[i * n + k]! * lambda[k]! * q[j * n + k]!;
    const { values } = symmetricEigen(a, n, false);
    lambda.forEach((l, k) => expect(values[k]).toBeCloseTo(l, 10));
  });
});
