import { SOLVER_NAMES, SOLVERS, type SolverName } from '@trajlab/core';
import { DEFAULT_CHUNK_SIZE, LAYOUTS, NOISE_INPUTS, PARAMETERIZATIONS } from '@trajlab/denoisers';
import { z } from 'zod';

/**
 * The study spec: one zod schema that the CLI (`validate`, `run`) and every worker validate against.
 * Every option documents its default; the README's spec reference mirrors this file.
 */

const positiveInt = z.number().int().positive();
const positive = z.number().positive();
const uint32 = z.number().int().min(0).max(0xffffffff);

/** Synthetic and file datasets. Synthetic kinds are seeded; file kinds read a local path (s3:// with the S3 store). */
export const datasetSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({
      kind: z.literal('gmm'),
      /** Data dimension. */
      dim: positiveInt,
      /** Mixture components. @defaultValue 8 */
      components: positiveInt.default(8),
      /** Training points drawn. @defaultValue 1000 */
      n: positiveInt.default(1000),
      /** Means ~ N(0, spread^2 I). @defaultValue 3 */
      spread: positive.default(3),
      /** Component standard deviation. @defaultValue 0.3 */
      std: positive.default(0.3),
      /** isotropic | diagonal (per-dimension stds in [std/2, 2 std]). @defaultValue isotropic */
      covariance: z.enum(['isotropic', 'diagonal']).default('isotropic'),
      /** uniform | random (flat Dirichlet). @defaultValue uniform */
      weights: z.enum(['uniform', 'random']).default('uniform'),
      /** Generator seed. @defaultValue 0 */
      seed: uint32.default(0),
    }),
    z.strictObject({
      kind: z.literal('gaussian'),
      dim: positiveInt,
      /** @defaultValue 1000 */
      n: positiveInt.default(1000),
      /** Covariance rank (<= dim). @defaultValue dim */
      rank: positiveInt.optional(),
      /** Top eigenvalue. @defaultValue 1 */
      scale: positive.default(1),
      /** Eigenvalue k = scale (k+1)^-decay; 0 = isotropic. @defaultValue 1 */
      decay: z.number().min(0).default(1),
      /** Std of the random mean's entries. @defaultValue 0 */
      meanScale: z.number().min(0).default(0),
      /** @defaultValue 0 */
      seed: uint32.default(0),
    }),
    ...(['two-moons', 'swiss-roll', 'rings'] as const).map((kind) =>
      z.strictObject({
        kind: z.literal(kind),
        /** @defaultValue 1000 */
        n: positiveInt.default(1000),
        /** Gaussian noise std added to each point. @defaultValue 0.05 */
        noise: z.number().min(0).default(0.05),
        /** @defaultValue 0 */
        seed: uint32.default(0),
      }),
    ),
    z.strictObject({
      kind: z.literal('idx'),
      /** Local path (relative to the spec file) of an MNIST-format IDX file, raw or .gz. */
      uri: z.string().min(1),
      /** Use only the first `limit` items. @defaultValue all */
      limit: positiveInt.optional(),
    }),
  ],
  { error: (iss) => (iss.code === 'invalid_union' ? `unknown kind; expected one of gmm, gaussian, two-moons, swiss-roll, rings, idx` : undefined) },
);
export type DatasetSpec = z.infer<typeof datasetSchema>;

/** Denoisers. Each may name its own `dataset` (default: the study dataset), e.g. an optimal denoiser over a subset. */
export const denoiserSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({
      kind: z.literal('optimal'),
      /**
       * Training points per chunk of the tensors the metrics and the wasm denoiser stream over (memory O(batch *
       * chunkSize)); with native products the dense denoiser streams its own blocks of 512 points. @defaultValue 16384
       */
      chunkSize: positiveInt.default(DEFAULT_CHUNK_SIZE),
      /**
       * Certified pruning for small sigma: skip training points whose weight is provably below tolerance / n of the
       * largest (PCA-subspace lower bound on the distance, `rank` directions). Off by default: results then stay
       * bit-identical whatever the sharding; with it they are within `tolerance` of the dense ones. @defaultValue off
       */
      pruning: z.strictObject({ rank: positiveInt.default(32), tolerance: z.number().gt(0).lt(1).default(1e-7) }).optional(),
      dataset: datasetSchema.optional(),
    }),
    z.strictObject({
      kind: z.literal('gaussian'),
      /** analytic (a `gaussian` dataset's own parameters) | fit (mean and covariance of the data) | auto. @defaultValue auto */
      source: z.enum(['auto', 'analytic', 'fit']).default('auto'),
      dataset: datasetSchema.optional(),
    }),
    z.strictObject({
      kind: z.literal('gmm'),
      dataset: datasetSchema.optional(),
    }),
    z.strictObject({
      kind: z.literal('tfjs'),
      /**
       * A TF.js layers or graph model: a directory holding model.json (or the model.json path itself), local (relative
       * to the spec file) or s3://bucket/prefix. The network takes the data (c_in x) and, unless noiseInput is none,
       * the noise level c_noise of shape [batch] or [batch, 1].
       */
      uri: z.string().min(1),
      /** What the network predicts: edm | eps | x0 | v. @defaultValue from trajlab-model.json (required without it) */
      parameterization: z.enum(PARAMETERIZATIONS).optional(),
      /** Data standard deviation of the preconditioning. @defaultValue from trajlab-model.json, else 0.5 */
      sigmaData: positive.optional(),
      /** c_noise: edm (ln(sigma)/4) | sigma | log-sigma | none. @defaultValue from trajlab-model.json, else edm */
      noiseInput: z.enum(NOISE_INPUTS).optional(),
      /** Flat vectors to network input: flat | hwc | chw. @defaultValue from the model's input shape */
      layout: z.enum(LAYOUTS).optional(),
      /** Largest batch given to the network at once. @defaultValue 256 */
      maxBatch: positiveInt.default(256),
    }),
  ],
  { error: (iss) => (iss.code === 'invalid_union' ? 'unknown kind; expected one of optimal, gaussian, gmm, tfjs' : undefined) },
);
export type DenoiserSpecInput = z.infer<typeof denoiserSchema>;

const solverName = z.enum(SOLVER_NAMES as [string, ...string[]], {
  error: (iss) => `unknown solver '${String(iss.input)}'; available: ${SOLVER_NAMES.join(', ')}`,
});
const SCHEDULES = ['polynomial', 'logsnr', 'time-uniform', 'custom', 'gits'] as const;
const scheduleName = z.enum(SCHEDULES, {
  error: (iss) => `unknown schedule '${String(iss.input)}'; available: ${SCHEDULES.join(', ')}`,
});

/** GITS: the time steps are chosen by dynamic programming over a fine teacher grid (see packages/core/src/gits.ts). */
export const gitsSchema = z.strictObject({
  /** Solver of the teacher trajectories. @defaultValue heun */
  teacher: solverName.default('heun'),
  /** Steps of the fine teacher grid. @defaultValue 60 */
  teacherSteps: positiveInt.default(60),
  /** Schedule of the teacher grid. @defaultValue polynomial */
  teacherSchedule: z.enum(['polynomial', 'logsnr', 'time-uniform']).default('polynomial'),
  /** rho of the teacher grid (polynomial: 7, time-uniform: 1). */
  teacherRho: positive.optional(),
  /** Warm-up trajectories the costs are averaged over. @defaultValue 256 */
  warmup: positiveInt.default(256),
  /** Discount of later steps' costs in the dynamic program. @defaultValue 1.15 */
  gamma: positive.default(1.15),
  /** Seed of the warm-up noise (independent of the study samples). @defaultValue 0 */
  seed: uint32.default(0),
});
export type GitsSpec = z.infer<typeof gitsSchema>;

const configFields = {
  solver: solverName,
  schedule: scheduleName.default('polynomial'),
  /** Exponent of the polynomial (default 7) or time-uniform (default 1) schedule. */
  rho: positive.optional(),
  /** custom schedule: the sigmas (strictly decreasing, > 0); steps = sigmas.length - 1. */
  sigmas: z.array(positive).min(2).optional(),
  /** gits schedule parameters (defaults when omitted). */
  gits: gitsSchema.optional(),
  /** Maximum order of ipndm / ipndm-v (1-4, default 4) and unipc (1-3, default 3). */
  order: positiveInt.optional(),
  /** dpm-solver++2m/3m and unipc: lower order on the last steps when steps < 10. @defaultValue true */
  lowerOrderFinal: z.boolean().optional(),
  /** dpm-solver++3m: published (reference implementations, order 2) | taylor (order 3). @defaultValue published */
  variant: z.enum(['published', 'taylor']).optional(),
  /** dpm-solver++2m/3m: dynamic thresholding of D, s = max(quantile_ratio |D|, maxValue), D <- clip(D, -s, s)/s. @defaultValue off */
  thresholding: z.strictObject({ ratio: z.number().gt(0).lt(1).default(0.995), maxValue: positive.default(1) }).optional(),
  /** Analytical first step: D(x_0; t_0) replaced by x_0 - t_0 x_0 / sqrt(1 + t_0^2), one NFE saved. @defaultValue false */
  afs: z.boolean().default(false),
  /** Append one pure denoising step to sigma 0 (x = D(x_S; sigmaMin)), +1 NFE. @defaultValue false */
  denoiseToZero: z.boolean().default(false),
};

/** One solvers entry: one config per `steps` value. */
export const solverEntrySchema = z.strictObject({
  ...configFields,
  /** Step counts, one config each (omit for custom). */
  steps: z.union([positiveInt, z.array(positiveInt).min(1)]).optional(),
});

/** The optional ground-truth config (one step count). */
export const referenceSchema = z.strictObject({ ...configFields, steps: positiveInt.optional() });

/** Metrics that cost extra work can be switched off. */
export const metricsSchema = z.strictObject({
  /** kde_gain per step (about one extra denoiser-sized pass per step; needs the training set). @defaultValue true */
  kde: z.boolean().default(true),
  /** nn_index / nn_dist / nn2_dist of the final samples. @defaultValue true */
  nearest: z.boolean().default(true),
  /** pca_var_1..3 per trajectory (host eigenvalues of a (S+1)^2 Gram matrix). @defaultValue true */
  pca: z.boolean().default(true),
  /**
   * Evaluate D(x_i; t_i) for the metrics where the solver did not (the last point, UniPC's corrected points, the AFS
   * first point), for d_norm, dist_d_final, dev_d, score_dev there; not counted in NFE. @defaultValue true
   */
  fillDenoised: z.boolean().default(true),
});

export const studySpecSchema = z
  .strictObject({
    /** Study name: [a-z0-9][a-z0-9-]*. */
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must match [a-z0-9][a-z0-9-]* (lower case, digits, dashes)'),
    /** uint32; sample i's initial noise depends only on (seed, i, dim). @defaultValue 0 */
    seed: uint32.default(0),
    /** Trajectories per solver config, sample ids 0..samples-1. */
    samples: positiveInt,
    /** Samples per job; the planner may lower it to respect memoryBudgetMB. @defaultValue 64 */
    shardSize: positiveInt.default(64),
    /** @defaultValue 0.002 */
    sigmaMin: positive.default(0.002),
    /** @defaultValue 80 */
    sigmaMax: positive.default(80),
    /** Memory one job may use (host trajectories + device buffers), in MiB. @defaultValue 4096 */
    memoryBudgetMB: positive.default(4096),
    dataset: datasetSchema,
    /** @defaultValue { kind: optimal } */
    denoiser: denoiserSchema.default({ kind: 'optimal', chunkSize: DEFAULT_CHUNK_SIZE }),
    /** Second denoiser evaluated at every visited point (score_dev). @defaultValue none */
    compare: denoiserSchema.optional(),
    solvers: z.array(solverEntrySchema).min(1),
    reference: referenceSchema.optional(),
    /** Full x_t and D(x_t) vectors are stored for sample ids < keepStates. @defaultValue 8 */
    keepStates: z.number().int().min(0).default(8),
    /** @defaultValue all on */
    metrics: metricsSchema.default({ kde: true, nearest: true, pca: true, fillDenoised: true }),
  })
  .superRefine((s, ctx) => {
    if (s.sigmaMin >= s.sigmaMax) ctx.addIssue({ code: 'custom', path: ['sigmaMin'], message: `must be below sigmaMax (${s.sigmaMax})` });
    const entries = [...s.solvers.map((e, i) => ({ e, path: ['solvers', i] as (string | number)[] })), ...(s.reference ? [{ e: s.reference, path: ['reference'] as (string | number)[] }] : [])];
    for (const { e, path } of entries) {
      const info = SOLVERS[e.solver as SolverName];
      if (e.order !== undefined) {
        const range = 'order' in info.options ? info.options.order : undefined;
        if (!range) ctx.addIssue({ code: 'custom', path: [...path, 'order'], message: `solver '${e.solver}' has no order option (ipndm, ipndm-v, unipc do)` });
        else if (e.order < range.min || e.order > range.max) ctx.addIssue({ code: 'custom', path: [...path, 'order'], message: `must be in ${range.min}..${range.max} for ${e.solver}` });
      }
      if (e.lowerOrderFinal !== undefined && !('lowerOrderFinal' in info.options)) {
        ctx.addIssue({ code: 'custom', path: [...path, 'lowerOrderFinal'], message: `solver '${e.solver}' has no lowerOrderFinal option (dpm-solver++2m/3m, unipc do)` });
      }
      if (e.variant !== undefined && e.solver !== 'dpm-solver++3m') {
        ctx.addIssue({ code: 'custom', path: [...path, 'variant'], message: 'only dpm-solver++3m has a variant' });
      }
      if (e.thresholding && !('thresholding' in info.options)) {
        ctx.addIssue({ code: 'custom', path: [...path, 'thresholding'], message: `solver '${e.solver}' has no thresholding option (dpm-solver++2m/3m do)` });
      }
      if (e.gits && e.schedule !== 'gits') ctx.addIssue({ code: 'custom', path: [...path, 'gits'], message: `only read by schedule 'gits' (schedule is '${e.schedule}')` });
      if (e.rho !== undefined && e.schedule !== 'polynomial' && e.schedule !== 'time-uniform') {
        ctx.addIssue({ code: 'custom', path: [...path, 'rho'], message: `only read by the polynomial and time-uniform schedules (schedule is '${e.schedule}')` });
      }
      if (e.schedule === 'custom') {
        if (!e.sigmas) ctx.addIssue({ code: 'custom', path: [...path, 'sigmas'], message: "schedule 'custom' needs sigmas" });
      } else {
        if (e.sigmas) ctx.addIssue({ code: 'custom', path: [...path, 'sigmas'], message: `sigmas are only read by schedule 'custom' (schedule is '${e.schedule}')` });
        if (e.steps === undefined) ctx.addIssue({ code: 'custom', path: [...path, 'steps'], message: 'required' });
      }
    }
    if (s.dataset.kind === 'gaussian' && s.dataset.rank !== undefined && s.dataset.rank > s.dataset.dim) {
      ctx.addIssue({ code: 'custom', path: ['dataset', 'rank'], message: `must be <= dim (${s.dataset.dim})` });
    }
  });

export type StudySpec = z.infer<typeof studySpecSchema>;
export type SolverEntry = z.infer<typeof solverEntrySchema>;
