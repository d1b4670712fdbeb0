import * as tf from '@tensorflow/tfjs-core';
import type { Dataset } from '@trajlab/datasets';
import { trainingBatch, type TrainOptions } from './train.js';

/** Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628274631];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/**
 * The EDM-weighted denoising loss of any denoiser on fixed evaluation draws: noise levels at `levels` quantiles of the
 * training distribution of ln(sigma), `batches` batches of training points and noise per level (Philox streams of
 * seed + 1, never used by training). Evaluated through the study wrapper, so trained networks, untrained ones and the
 * optimal denoiser (the minimum over the training set) are measured the same way.
 */
export function evaluateLoss(
  denoise: (x: tf.Tensor2D, sigma: number) => tf.Tensor2D,
  data: Dataset,
  o: Pick<TrainOptions, 'batchSize' | 'pMean' | 'pStd' | 'seed'>,
  sigmaData: number,
  levels = 8,
  batches = 2,
): number {
  let total = 0;
  for (let l = 0; l < levels; l++) {
    const sigma = Math.exp(o.pMean + o.pStd * normalQuantile((l + 0.5) / levels));
    const weight = (sigma ** 2 + sigmaData ** 2) / (sigma * sigmaData) ** 2;
    for (let k = 0; k < batches; k++) {
      const batch = trainingBatch(data, { ...o, seed: (o.seed + 1) >>> 0 }, l * batches + k);
      total += tf.tidy(() => {
        const y = tf.tensor2d(batch.y, [o.batchSize, data.dim]);
        const x = tf.add(y, tf.mul(tf.tensor2d(batch.noise, [o.batchSize, data.dim]), sigma)) as tf.Tensor2D;
        return weight * tf.mean(tf.square(tf.sub(denoise(x, sigma), y))).dataSync()[0]!;
      });
    }
  }
  return total / (levels * batches);
}
