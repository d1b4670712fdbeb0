import * as tf from '@tensorflow/tfjs-core';
import { normalStream } from '@trajlab/core';
import { describe, expect, it } from 'vitest';
import { ensureConvGradient, ensureFastTransposedMatMul } from './wasm-kernels.js';

describe('training kernels on this backend', () => {
  it("Conv2D filter gradients match a float64 brute force (same and valid padding)", () => {
    ensureConvGradient();
    const [B, H, W, ci, co, k] = [2, 5, 4, 3, 2, 3];
    const xv = Float32Array.from(normalStream(1, 0, B * H * W * ci));
    const fv = Float32Array.from(normalStream(2, 0, k * k * ci * co));
    for (const pad of ['same', 'valid'] as const) {
      const x = tf.tensor4d(xv, [B, H, W, ci]);
      const f = tf.variable(tf.tensor4d(fv, [k, k, ci, co]));
      const oh = pad === 'same' ? H : H - k + 1;
      const ow = pad === 'same' ? W : W - k + 1;
      const gy = Float32Array.from(normalStream(3, 0, B * oh * ow * co));
      // loss = sum(conv(x, f) * gy), so dLoss/df = sum_{b,h,w} xPad[b, h+i, w+j, c] gy[b, h, w, o]
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(tf.conv2d(x, f, 1, pad), tf.tensor4d(gy, [B, oh, ow, co]))) as tf.Scalar, [f]);
      const got = grads[f.name]!.dataSync();
      const off = pad === 'same' ? (k - 1) / 2 : 0;
      for (let i = 0; i < k; i++)
        for (let j = 0; j < k; j++)
          for (let c = 0; c < ci; c++)
            for (let o = 0; o < co; o++) {
              let want = 0;
              for (let b = 0; b < B; b++)
                for (let h = 0; h < oh; h++)
                  for (let w = 0; w < ow; w++) {
                    const r = h + i - off;
                    const s = w + j - off;
                    if (r < 0 || r >= H || s < 0 || s >= W) continue;
                    want += xv[((b * H + r) * W + s) * ci + c]! * gy[((b * oh + h) * ow + w) * co + o]!;
                  }
              expect(Math.abs(got[((i * k + j) * ci + c) * co + o]! - want)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want)));
            }
      tf.dispose([x, f, ...Object.values(grads)]);
    }
  });

  it('transposed matrix products give the same numbers after the wasm re-registration', () => {
    const a = tf.tensor2d(Float32Array.from(normalStream(4, 0, 6 * 5)), [6, 5]);
    const b = tf.tensor2d(Float32Array.from(normalStream(5, 0, 6 * 7)), [6, 7]);
    const before = [tf.matMul(a, b, true, false), tf.matMul(b, a, true, false), tf.matMul(a, tf.transpose(b), true, true)].map((t) => Array.from(t.dataSync()));
    ensureFastTransposedMatMul();
    const after = [tf.matMul(a, b, true, false), tf.matMul(b, a, true, false), tf.matMul(a, tf.transpose(b), true, true)].map((t) => Array.from(t.dataSync()));
    for (let i = 0; i < 3; i++) after[i]!.forEach((v, j) => expect(v).toBeCloseTo(before[i]![j]!, 4));
    expect(after[0]!.length).toBe(35);
  });
});
