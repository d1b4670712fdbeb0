import * as tf from '@tensorflow/tfjs-core';
import { buildSigmas, heun, initialNoiseBatch } from '@trajlab/core';
import { describe, expect, it } from 'vitest';
import { gaussianDenoiser } from './analytic.js';
import { layoutShape, networkDenoiser, PARAMETERIZATIONS, preconditioning, type Layout, type Network, type Parameterization } from './network.js';

/**
 * A network that computes, for isotropic Gaussian data N(mu, v I), exactly what a perfectly trained network of each
 * parameterization would output: it undoes c_in and c_noise (EDM: sigma = exp(4 c_noise)), forms the exact denoiser
 * D(x; s) = mu + v/(v+s^2) (x - mu) and returns the parameterization's target (D - c_skip x) / c_out.
 */
function exactGaussianNetwork(mu: Float32Array, v: number, param: Parameterization, sigmaData: number, inputShape: number[], toInputLayout: (t: tf.Tensor2D) => tf.Tensor): Network {
  const dim = mu.length;
  const muInput = tf.tidy(() => toInputLayout(tf.tensor2d(mu, [1, dim])));
  return {
    inputShape,
    noiseRank: 2,
    predict: (u, cNoise) =>
      tf.tidy(() => {
        const sigma = tf.exp(tf.mul(cNoise!, 4)); // [B, 1]
        const expand = (t: tf.Tensor) => tf.reshape(t, [t.shape[0]!, ...inputShape.map(() => 1)]);
        const s = expand(sigma);
        const s2 = tf.square(s);
        const norm = tf.sqrt(tf.add(s2, sigmaData * sigmaData));
        const x = tf.mul(u, norm); // undo c_in
        const d = tf.add(muInput, tf.mul(tf.div(v, tf.add(s2, v)), tf.sub(x, muInput)));
        if (param === 'x0') return d;
        if (param === 'eps') return tf.div(tf.sub(x, d), s);
        const cSkip = tf.div(sigmaData * sigmaData, tf.square(norm));
        const cOut = tf.div(tf.mul(s, sigmaData), norm);
        const f = tf.div(tf.sub(d, tf.mul(cSkip, x)), cOut);
        return param === 'edm' ? f : tf.neg(f);
      }),
    paramCount: dim + 1,
    describe: `exact gaussian (${param})`,
    dispose: () => muInput.dispose(),
  };
}

describe('preconditioning', () => {
  it('gives D = x0 target for every parameterization when F is the parameterization\'s exact target', () => {
    // for x = x0 + s eps with scalars, D must return x0 when F is the exact target of its parameterization
    const x0 = 0.7;
    const eps = -1.3;
    for (const s of [0.01, 0.5, 3, 80]) {
      const x = x0 + s * eps;
      for (const param of PARAMETERIZATIONS) {
        const p = preconditioning(param, s, 0.5, 'edm');
        const target = param === 'x0' ? x0 : param === 'eps' ? eps : (x0 - p.cSkip * x) / p.cOut;
        expect(p.cSkip * x + p.cOut * target).toBeCloseTo(x0, 12);
        expect(p.cIn).toBeCloseTo(1 / Math.sqrt(s * s + 0.25), 14);
      }
      // v is the negated EDM target: F_v = (c_skip x - x0) / (s sd / sqrt(s^2 + sd^2))
      const pe = preconditioning('edm', s, 0.5, 'edm');
      expect(preconditioning('v', s, 0.5, 'edm').cOut).toBe(-pe.cOut);
      expect(pe.cNoise).toBeCloseTo(Math.log(s) / 4, 14);
    }
  });
});

describe('networkDenoiser', () => {
  const h = 4;
  const w = 3;
  const c = 2;
  const dim = h * w * c;
  const mu = Float32Array.from({ length: dim }, (_, i) => Math.sin(i) * 0.8);
  const variance = 0.3;
  const analytic = gaussianDenoiser({
    kind: 'gaussian',
    mean: Float64Array.from(mu),
    rank: dim,
    basis: Float64Array.from({ length: dim * dim }, (_, i) => (Math.floor(i / dim) === i % dim ? 1 : 0)),
    eigenvalues: Float64Array.from({ length: dim }, () => variance),
  });
  const sigmas = buildSigmas('polynomial', { steps: 12, sigmaMin: 0.002, sigmaMax: 80, rho: 7 });
  const x0 = () => tf.tensor2d(initialNoiseBatch(3, 0, 6, dim, 80), [6, dim]);
  const trajectory = async (denoise: Parameters<typeof heun>[0]) => {
    const xs: number[][][] = [];
    const start = x0();
    const final = await heun(denoise, start, sigmas, {}, ({ x }) => {
      xs.push(x.arraySync());
    });
    tf.dispose([start, final]);
    return xs;
  };

  const layouts: { layout: Layout; toInput: (t: tf.Tensor2D) => tf.Tensor }[] = [
    { layout: 'flat', toInput: (t) => t },
    { layout: 'hwc', toInput: (t) => tf.reshape(t, [t.shape[0], h, w, c]) },
    { layout: 'chw', toInput: (t) => tf.transpose(tf.reshape(t, [t.shape[0], h, w, c]), [0, 3, 1, 2]) },
  ];

  it.each(PARAMETERIZATIONS.flatMap((p) => layouts.map((l) => [p, l.layout] as const)))(
    'an exact Gaussian network in parameterization %s, layout %s, reproduces the analytic Heun trajectories',
    async (param, layout) => {
      const image = { height: h, width: w, channels: c };
      const shape = layoutShape(layout, dim, image)!;
      const net = exactGaussianNetwork(mu, variance, param, 0.5, shape, layouts.find((l) => l.layout === layout)!.toInput);
      const learned = networkDenoiser(net, { parameterization: param, sigmaData: 0.5, noiseInput: 'edm', layout, dim, image, maxBatch: 4 });
      const want = await trajectory(analytic.denoise);
      const got = await trajectory(learned.denoise);
      expect(got.length).toBe(sigmas.length);
      for (let i = 0; i < want.length; i++) {
        for (let b = 0; b < want[i]!.length; b++) {
          const scale = Math.max(1, Math.hypot(...want[i]![b]!));
          for (let k = 0; k < dim; k++) expect(Math.abs(got[i]![b]![k]! - want[i]![b]![k]!) / scale).toBeLessThan(2e-5);
        }
      }
      learned.dispose();
    },
  );

  it('refuses a network whose input shape does not match the data layout, naming both shapes', () => {
    const net = exactGaussianNetwork(mu, variance, 'edm', 0.5, [dim + 1], (t) => t);
    expect(() => networkDenoiser(net, { parameterization: 'edm', sigmaData: 0.5, noiseInput: 'edm', layout: 'flat', dim })).toThrow(
      `expects inputs of shape [${dim + 1}] but layout 'flat' of the data gives [${dim}]`,
    );
    expect(() => networkDenoiser(net, { parameterization: 'edm', sigmaData: 0.5, noiseInput: 'edm', layout: 'hwc', dim })).toThrow(/needs image data/);
    net.dispose();
  });
});
