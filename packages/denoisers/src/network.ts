import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from './types.js';

/**
 * Learned denoisers: a network F wrapped by a preconditioning into a denoiser D(x; sigma) of the EDM form
 *   D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))        (Karras et al. 2022, eq. 7)
 * The parameterization says what F predicts:
 *   edm: F = (x_0 - c_skip x) / c_out with c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2)   (EDM, Table 1)
 *   v:   the same with c_out negated: F = v = (c_skip x - x_0) / (s sd / sqrt(s^2+sd^2))         (v-prediction)
 *   eps: F = eps = (x - x_0) / s, so D = x - s F                                                (noise prediction)
 *   x0:  F = x_0, so D = F                                                                        (data prediction)
 * Every parameterization feeds the network c_in x with c_in = 1/sqrt(s^2 + sd^2), i.e. an input of unit variance when the
 * data have standard deviation sd (for sd = 1 this is the variance-preserving x of DDPM-style models).
 */

export const PARAMETERIZATIONS = ['edm', 'eps', 'x0', 'v'] as const;
export type Parameterization = (typeof PARAMETERIZATIONS)[number];

/**
 * What the network receives as its noise-level input c_noise: `edm` ln(sigma)/4 (EDM), `sigma`, `log-sigma` ln(sigma),
 * or `none` (a network with a single input).
 */
export const NOISE_INPUTS = ['edm', 'sigma', 'log-sigma', 'none'] as const;
export type NoiseInput = (typeof NOISE_INPUTS)[number];

/**
 * How a flat data vector (row-major, channels last) maps onto the network input: `flat` [dim], `hwc` [H, W, C] (a
 * reshape), `chw` [C, H, W] (reshape then transpose).
 */
export const LAYOUTS = ['flat', 'hwc', 'chw'] as const;
export type Layout = (typeof LAYOUTS)[number];

/** Coefficients of D(x; s) = c_skip x + c_out F(c_in x, c_noise). */
export interface Preconditioning {
  cSkip: number;
  cOut: number;
  cIn: number;
  /** null for noiseInput `none`. */
  cNoise: number | null;
}

/** The preconditioning of a parameterization at noise level `sigma` (see the module comment). */
export function preconditioning(parameterization: Parameterization, sigma: number, sigmaData: number, noiseInput: NoiseInput): Preconditioning {
  const norm = Math.sqrt(sigma * sigma + sigmaData * sigmaData);
  const cIn = 1 / norm;
  const cNoise = noiseInput === 'edm' ? Math.log(sigma) / 4 : noiseInput === 'sigma' ? sigma : noiseInput === 'log-sigma' ? Math.log(sigma) : null;
  switch (parameterization) {
    case 'edm':
    case 'v': {
      const cOut = (sigma * sigmaData) / norm;
      return { cSkip: (sigmaData * sigmaData) / (norm * norm), cOut: parameterization === 'edm' ? cOut : -cOut, cIn, cNoise };
    }
    case 'eps':
      return { cSkip: 1, cOut: -sigma, cIn, cNoise };
    case 'x0':
      return { cSkip: 0, cOut: 1, cIn, cNoise };
  }
}

/** A network F(input, noise) with a batch dimension first, as loaded from a model file or built in code. */
export interface Network {
  /** Input shape without the batch dimension, e.g. [784] or [28, 28, 1]. */
  inputShape: number[];
  /** Rank of the noise input including the batch dimension ([B] -> 1, [B, 1] -> 2); null when there is none. */
  noiseRank: 1 | 2 | null;
  /** F for a batch: input [B, ...inputShape], noise [B] or [B, 1]; returns a tensor of the input's shape. */
  predict(input: tf.Tensor, noise: tf.Tensor | null): tf.Tensor;
  /** Trainable parameter count (for cost estimates). */
  paramCount: number;
  describe: string;
  dispose(): void;
}

/** Options of networkDenoiser. */
export interface NetworkDenoiserOptions {
  parameterization: Parameterization;
  /** Standard deviation of the data the network was trained for. */
  sigmaData: number;
  noiseInput: NoiseInput;
  /** Mapping of flat vectors to the network input. */
  layout: Layout;
  /** Data dimension. */
  dim: number;
  /** Image shape [H, W, C] of the data (needed for hwc and chw). */
  image?: { height: number; width: number; channels: number };
  /** Largest batch given to the network at once (bigger batches are split). @defaultValue 256 */
  maxBatch?: number;
  /** Whether dispose() also disposes the network (false when it is shared). @defaultValue true */
  ownsNetwork?: boolean;
}

/** The network input shape a layout expects for data of this dim/image (without the batch dimension). */
export function layoutShape(layout: Layout, dim: number, image?: { height: number; width: number; channels: number }): number[] | null {
  if (layout === 'flat') return [dim];
  if (!image) return null;
  return layout === 'hwc' ? [image.height, image.width, image.channels] : [image.channels, image.height, image.width];
}

/** Wraps a network into a denoiser (the same wrapper for loaded models, trained models and networks built in code). */
export function networkDenoiser(net: Network, opts: NetworkDenoiserOptions): Denoiser {
  const shape = layoutShape(opts.layout, opts.dim, opts.image);
  if (!shape) throw new Error(`layout '${opts.layout}' needs image data (height, width, channels); the data are flat vectors of dim ${opts.dim}`);
  if (shape.join(',') !== net.inputShape.join(',')) {
    throw new Error(`the network expects inputs of shape [${net.inputShape.join(', ')}] but layout '${opts.layout}' of the data gives [${shape.join(', ')}]`);
  }
  if ((opts.noiseInput === 'none') !== (net.noiseRank === null)) {
    throw new Error(opts.noiseInput === 'none' ? 'noiseInput is none but the network has a noise input' : `the network has no noise input; set noiseInput: none`);
  }
  const maxBatch = opts.maxBatch ?? 256;
  const toInput = (x: tf.Tensor2D): tf.Tensor => {
    const b = x.shape[0];
    if (opts.layout === 'flat') return x;
    const hwc = tf.reshape(x, [b, opts.image!.height, opts.image!.width, opts.image!.channels]);
    return opts.layout === 'hwc' ? hwc : tf.transpose(hwc, [0, 3, 1, 2]);
  };
  const fromOutput = (y: tf.Tensor, b: number): tf.Tensor2D => {
    if (y.size !== b * opts.dim) throw new Error(`the network returned shape [${y.shape.join(', ')}]; expected ${b} x [${net.inputShape.join(', ')}]`);
    const hwcOut = opts.layout === 'chw' ? tf.transpose(y, [0, 2, 3, 1]) : y;
    return tf.reshape(hwcOut, [b, opts.dim]);
  };
  const evaluate = (x: tf.Tensor2D, sigma: number): tf.Tensor2D =>
    tf.tidy(() => {
      const p = preconditioning(opts.parameterization, sigma, opts.sigmaData, opts.noiseInput);
      const b = x.shape[0];
      const noise = p.cNoise === null ? null : tf.fill(net.noiseRank === 1 ? [b] : [b, 1], p.cNoise);
      const f = fromOutput(net.predict(toInput(tf.mul(x, p.cIn)), noise), b);
      if (p.cSkip === 0) return p.cOut === 1 ? f : tf.mul(f, p.cOut);
      return tf.add(tf.mul(x, p.cSkip), tf.mul(f, p.cOut));
    });
  return {
    kind: 'tfjs',
    dim: opts.dim,
    denoise: (x, sigma) => {
      const b = x.shape[0];
      if (b <= maxBatch) return evaluate(x, sigma);
      return tf.tidy(() => {
        const parts: tf.Tensor2D[] = [];
        for (let i = 0; i < b; i += maxBatch) parts.push(evaluate(tf.slice(x, [i, 0], [Math.min(maxBatch, b - i), opts.dim]), sigma));
        return tf.concat(parts, 0);
      });
    },
    flopsPerEval: 2 * net.paramCount,
    paramBytes: 4 * net.paramCount,
    describe: `${net.describe} (${opts.parameterization}, sigmaData ${opts.sigmaData}, c_noise ${opts.noiseInput}, layout ${opts.layout})`,
    dispose: () => {
      if (opts.ownsNetwork !== false) net.dispose();
    },
  };
}
