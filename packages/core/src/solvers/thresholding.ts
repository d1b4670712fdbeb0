import * as tf from '@tensorflow/tfjs-core';
import type { DenoiseFn } from './types.js';

/** Dynamic thresholding of data predictions (Saharia et al. 2022, Imagen), as DPM-Solver++ offers it. */
export interface ThresholdingOptions {
  /** Quantile of |D| per sample that sets the threshold s. @defaultValue 0.995 */
  ratio?: number;
  /** s is at least this value; D is divided by s, so with 1 (the pixel range) D inside [-1, 1] is untouched. @defaultValue 1 */
  maxValue?: number;
}

/**
 * Wraps a denoiser: per sample, s = max(quantile_ratio(|D|), maxValue), then D <- clip(D, -s, s) / s. The quantile is
 * interpolated linearly between order statistics (like numpy/torch quantile).
 */
export function dynamicThresholding(denoise: DenoiseFn, opts: ThresholdingOptions = {}): DenoiseFn {
  const ratio = opts.ratio ?? 0.995;
  const maxValue = opts.maxValue ?? 1;
  return (x, t) => {
    const d = denoise(x, t);
    const out = tf.tidy(() => {
      const n = d.shape[1];
      const pos = ratio * (n - 1);
      const lo = Math.floor(pos);
      const frac = pos - lo;
      // the (lo)-th and (lo+1)-th smallest of |D| are the last two of the top (n - lo) values
      const k = n - lo;
      const top = tf.topk(tf.abs(d), k, true).values;
      const vLo = tf.slice(top, [0, k - 1], [-1, 1]);
      const vHi = k >= 2 ? tf.slice(top, [0, k - 2], [-1, 1]) : vLo;
      const q = tf.add(tf.mul(vLo, 1 - frac), tf.mul(vHi, frac));
      const s = tf.maximum(q, maxValue);
      return tf.div(tf.minimum(tf.maximum(d, tf.neg(s)), s), s) as tf.Tensor2D;
    });
    d.dispose();
    return out;
  };
}
