import { installNativeMatMul, loadNativeBlas, nativeMatMulActive, NATIVE_ISAS, type NativeIsa } from '@trajlab/backend';
import { normalStream } from '@trajlab/core';
import { describe, expect, it } from 'vitest';
import { kdeChunkSums, kdeExp } from './kde-sums.js';

/** The sums of kde-sums.ts from their definition: Math.exp, one plain sum in order of j. */
function definition(a: Float32Array, dy: Float32Array, rowTerm: Float64Array, invT2: number): number[][] {
  const B = rowTerm.length;
  const size = a.length / B;
  const rows: number[][] = [];
  for (let r = 0; r < B; r++) {
    const ar = Array.from(a.subarray(r * size, (r + 1) * size));
    const c = Array.from(dy.subarray(r * size, (r + 1) * size), (d) => (2 * d - rowTerm[r]!) * 0.5 * invT2);
    const m0 = Math.max(...ar);
    const z = ar.map((v, j) => v - m0 + c[j]!);
    const m1 = Math.max(...z);
    rows.push([m0, ar.reduce((s, v) => s + Math.exp(v - m0), 0), m1, z.reduce((s, v) => s + Math.exp(v - m1), 0)]);
  }
  return rows;
}

/** Logits and products shaped like a KDE step's: `B` rows of `size` points, spread over `spread` nats. */
function inputs(B: number, size: number, seed: number, spread: number) {
  const a = Float32Array.from(normalStream(seed, 1, B * size), (v) => spread * v + 40);
  const dy = Float32Array.from(normalStream(seed, 2, B * size), (v) => 0.3 * v);
  const rowTerm = Float64Array.from(normalStream(seed, 3, B), (v) => 0.1 * v);
  return { a, dy, rowTerm };
}

describe('the KDE gain exponential sums', () => {
  it('exponentiate within a few ulps of Math.exp, exactly 1 at 0, 0 below -700 and NaN for NaN', () => {
    let worst = 0;
    for (let i = 0; i <= 20000; i++) {
      const x = -700 * (i / 20000) ** 2;
      worst = Math.max(worst, Math.abs(kdeExp(x) - Math.exp(x)) / Math.exp(x));
    }
    expect(worst).toBeLessThan(8 * Number.EPSILON);
    expect(kdeExp(0)).toBe(1);
    expect(kdeExp(-0)).toBe(1);
    expect([kdeExp(-700.5), kdeExp(-1e6), kdeExp(-Infinity)]).toEqual([0, 0, 0]);
    expect(kdeExp(Number.NaN)).toBeNaN();
  });

  it('agree with their definition in float64', () => {
    for (const [B, size, spread] of [
      [1, 1, 1],
      [3, 13, 2],
      [4, 1000, 5],
      [2, 777, 400],
    ] as const) {
      const { a, dy, rowTerm } = inputs(B, size, B * size, spread);
      const out = new Float64Array(4 * B);
      kdeChunkSums(a, dy, rowTerm, 0.7, out);
      const want = definition(a, dy, rowTerm, 0.7);
      for (let r = 0; r < B; r++) {
        expect(out[4 * r]).toBe(want[r]![0]);
        expect(out[4 * r + 2]).toBe(want[r]![2]);
        for (const k of [1, 3]) expect(Math.abs(out[4 * r + k]! - want[r]![k]!) / want[r]![k]!, `row ${r} sum ${k}`).toBeLessThan(1e-13);
        // each sum holds its maximum's term, e^0 = 1
        expect(out[4 * r + 1]).toBeGreaterThanOrEqual(1);
        expect(out[4 * r + 3]).toBeGreaterThanOrEqual(1);
      }
    }
  });

  const loaded = loadNativeBlas();
  it.runIf(nativeMatMulActive() && 'blas' in loaded)('give the same bits in the native binding, on every instruction set, as in JavaScript', () => {
    const blas = (loaded as { blas: import('@trajlab/backend').NativeBlas }).blas;
    const isas = NATIVE_ISAS.slice(NATIVE_ISAS.indexOf(blas.bestIsa()));
    try {
      // whole blocks of eight lanes and partial ones, terms far below the maximum, a row with a NaN
      for (const [B, size, spread] of [
        [1, 1, 1],
        [2, 7, 3],
        [3, 8, 3],
        [5, 9, 30],
        [4, 1001, 5],
        [2, 64, 900],
      ] as const) {
        const { a, dy, rowTerm } = inputs(B, size, 7 * B + size, spread);
        if (size === 9) a[size + 4] = Number.NaN;
        const js = new Float64Array(4 * B);
        kdeChunkSums(a, dy, rowTerm, 1.3, js);
        for (const isa of isas) {
          blas.setIsa(isa as NativeIsa);
          const native = new Float64Array(4 * B);
          blas.kdeSums(a, dy, rowTerm, 1.3, native);
          expect(Buffer.from(native.buffer).equals(Buffer.from(js.buffer)), `${B} x ${size} on ${isa}: ${native} vs ${js}`).toBe(true);
        }
        if (size === 9) expect(Number.isNaN(js[5]!) && Number.isNaN(js[7]!)).toBe(true);
      }
    } finally {
      installNativeMatMul(1);
    }
    expect(() => blas.kdeSums(new Float32Array(6), new Float32Array(6), new Float64Array(4), 1, new Float64Array(16))).toThrow(/kdeSums: the arrays do not match/);
    expect(() => blas.kdeSums(new Float32Array(8), new Float32Array(8), new Float64Array(2), 1, new Float64Array(4))).toThrow(/kdeSums: the arrays do not match/);
    expect(() => blas.kdeSums(new Float32Array(8), new Float32Array(8), new Float32Array(2) as unknown as Float64Array, 1, new Float64Array(8))).toThrow(/rowTerm must be a Float64Array/);
  });
});
