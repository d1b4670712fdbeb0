import { buildSigmas, checkSigmas, SOLVERS, solverNfe, type SolverName, type SolverOptions } from '@trajlab/core';
import type { Dataset } from '@trajlab/datasets';
import { checkDenoiserSpec, DenoiserSpecError } from '@trajlab/denoisers';
import { readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { canonicalJson, sha256Hex } from './canonical.js';
import { loadDataset } from './datasets.js';
import { resolveTfjsModel, type ResolvedModel } from './models.js';
import { prefetchRemoteData } from './remote-data.js';
import { SpecError } from './errors.js';
import { parseSpecText, readSpecFile } from './spec-file.js';
import { gitsSchema, studySpecSchema, type DatasetSpec, type DenoiserSpecInput, type GitsSpec, type StudySpec } from './spec.js';

/** One solver configuration of a study. */
export interface ConfigPlan {
  /** Readable deterministic slug, e.g. heun-polynomial-rho7-s10 (reference configs start with ref-). */
  configId: string;
  role: 'study' | 'reference';
  solver: SolverName;
  schedule: string;
  rho?: number;
  steps: number;
  /** The S + 1 sampling sigmas (sigma 0 of denoiseToZero not included); empty for gits until computed at run start. */
  sigmas: number[];
  /** Options passed to the solver. */
  options: SolverOptions;
  /** Analytical first step (one NFE saved). */
  afs: boolean;
  denoiseToZero: boolean;
  /** GITS parameters with defaults (schedule gits only). */
  gits?: GitsSpec;
  /** Denoiser evaluations per trajectory (the contract's NFE). */
  nfe: number;
  /** Where the spec defined it, for messages. */
  field: string;
}

/** What is known of a dataset once loaded. */
export interface DatasetInfo {
  kind: string;
  n: number;
  dim: number;
  contentHash: string;
  source: string;
  image?: { height: number; width: number; channels: number };
  /** Mixture components (gmm) for cost estimates. */
  components?: number;
}

/** A validated study: spec with defaults, loaded data, configs, identity. */
export interface ResolvedStudy {
  spec: StudySpec;
  /** Canonical JSON of the resolved spec (spec with defaults + content hashes of the data): the study's identity. */
  canonical: string;
  /** `<name>-<first 10 hex of sha256(canonical)>`. */
  studyId: string;
  /** Directory relative dataset paths are resolved against (the spec file's). */
  baseDir: string;
  data: { dataset: DatasetInfo; denoiser?: DatasetInfo; compare?: DatasetInfo };
  /** tfjs models of the denoiser and the compare denoiser. */
  models: { denoiser?: ResolvedModel; compare?: ResolvedModel };
  configs: ConfigPlan[];
}

/** Loaded datasets, to build denoisers without reloading. */
export interface LoadedData {
  dataset: Dataset;
  denoiser: Dataset;
  compare?: Dataset;
}

/** Parses YAML or JSON text into a validated spec; every problem is reported with its field. */
export function parseSpec(text: string, file: string): StudySpec {
  return parseSpecText(text, file, studySpecSchema, 'spec');
}

function info(d: Dataset, spec: DatasetSpec): DatasetInfo {
  return {
    kind: d.kind,
    n: d.n,
    dim: d.dim,
    contentHash: d.contentHash,
    source: d.source,
    image: d.image,
    components: spec.kind === 'gmm' ? spec.components : undefined,
  };
}

function formatNumber(v: number): string {
  return String(v).replace('.', 'p');
}

/** rho as resolved: polynomial 7, time-uniform 1 by default; undefined for schedules without one. */
function resolvedRho(schedule: string, rho: number | undefined): number | undefined {
  if (schedule === 'polynomial') return rho ?? 7;
  if (schedule === 'time-uniform') return rho ?? 1;
  return undefined;
}

type Entry = StudySpec['solvers'][number] | NonNullable<StudySpec['reference']>;

/** GITS parameters with every default filled in (schedule gits only). */
function resolvedGits(e: Entry): GitsSpec | undefined {
  if (e.schedule !== 'gits') return undefined;
  const g = e.gits ?? gitsSchema.parse({});
  return { ...g, teacherRho: resolvedRho(g.teacherSchedule, g.teacherRho) };
}

/** Suffixes of a config id for non-default options, so every distinct config has a distinct readable id. */
function optionSuffix(e: Entry): string {
  const info = SOLVERS[e.solver as SolverName];
  let s = '';
  if (e.order !== undefined && 'order' in info.options && e.order !== info.options.order.default) s += `-o${e.order}`;
  if (e.variant === 'taylor') s += '-taylor';
  if (e.lowerOrderFinal === false) s += '-lof0';
  if (e.thresholding) s += `-thr${formatNumber(e.thresholding.ratio)}`;
  if (e.afs) s += '-afs';
  if (e.denoiseToZero) s += '-dz';
  return s;
}

function expandConfigs(spec: StudySpec): ConfigPlan[] {
  const out: ConfigPlan[] = [];
  const seen = new Map<string, string>();
  const entries = [
    ...spec.solvers.map((e, i) => ({ e, field: `solvers[${i}]`, role: 'study' as const })),
    ...(spec.reference ? [{ e: spec.reference, field: 'reference', role: 'reference' as const }] : []),
  ];
  for (const { e, field, role } of entries) {
    const stepsList = e.schedule === 'custom' ? [e.sigmas!.length - 1] : Array.isArray(e.steps) ? e.steps : [e.steps!];
    if (e.schedule === 'custom') {
      const problem = checkSigmas(e.sigmas!);
      if (problem) throw new SpecError(`${field}.sigmas`, problem);
      const given = Array.isArray(e.steps) ? e.steps : e.steps === undefined ? [] : [e.steps];
      if (given.some((s) => s !== e.sigmas!.length - 1)) throw new SpecError(`${field}.steps`, `custom sigmas define ${e.sigmas!.length - 1} steps; steps says ${given.join(', ')}`);
    }
    stepsList.forEach((steps, j) => {
      const solver = e.solver as SolverName;
      const rho = resolvedRho(e.schedule, e.rho);
      const gits = resolvedGits(e);
      const stepField = Array.isArray(e.steps) ? `${field}.steps[${j}]` : `${field}.steps`;
      if (gits && steps > gits.teacherSteps) throw new SpecError(stepField, `gits needs steps <= gits.teacherSteps (${gits.teacherSteps}); got ${steps}`);
      const sigmas = e.schedule === 'gits' ? [] : buildSigmas(e.schedule, { steps, sigmaMin: spec.sigmaMin, sigmaMax: spec.sigmaMax, rho, sigmas: e.sigmas });
      const defaultGits = canonicalJson(resolvedGits({ ...e, gits: undefined }));
      const schedulePart =
        e.schedule === 'polynomial' || e.schedule === 'time-uniform'
          ? `${e.schedule}-rho${formatNumber(rho!)}`
          : e.schedule === 'custom'
            ? `custom-${sha256Hex(canonicalJson(e.sigmas)).slice(0, 6)}`
            : e.schedule === 'gits'
              ? canonicalJson(gits) === defaultGits
                ? 'gits'
                : `gits-${sha256Hex(canonicalJson(gits)).slice(0, 6)}`
              : e.schedule;
      const configId = `${role === 'reference' ? 'ref-' : ''}${solver}-${schedulePart}-s${steps}${optionSuffix(e)}`;
      const prev = seen.get(configId);
      if (prev) throw new SpecError(stepField, `duplicates config '${configId}' already defined by ${prev}`);
      seen.set(configId, stepField);
      out.push({
        configId,
        role,
        solver,
        schedule: e.schedule,
        rho,
        steps,
        sigmas,
        options: { order: e.order, lowerOrderFinal: e.lowerOrderFinal, variant: e.variant, thresholding: e.thresholding },
        afs: e.afs,
        denoiseToZero: e.denoiseToZero,
        gits,
        nfe: solverNfe(solver, steps) - (e.afs ? 1 : 0) + (e.denoiseToZero ? 1 : 0),
        field,
      });
    });
  }
  return out;
}

/** The spec as it enters the study id: defaults filled, analytic-only fields dropped where unused. */
function normalisedSpec(spec: StudySpec): unknown {
  const entry = (e: Entry) => ({ ...e, rho: resolvedRho(e.schedule, e.rho), gits: resolvedGits(e) });
  return { ...spec, solvers: spec.solvers.map(entry), reference: spec.reference ? entry(spec.reference) : undefined };
}

/** Checks the denoiser/compare specs against their datasets and the study dataset's dim. */
function checkDenoiser(spec: DenoiserSpecInput, own: Dataset, study: Dataset, field: string): void {
  if (own.dim !== study.dim) {
    throw new SpecError(`${field}.dataset`, `dim ${own.dim} does not match the study dataset's dim ${study.dim}`);
  }
  try {
    checkDenoiserSpec(spec, own, field);
  } catch (err) {
    if (err instanceof DenoiserSpecError) throw new SpecError(err.field, err.detail);
    throw err;
  }
}

/**
 * Validates and resolves a spec given as text: parses it, loads the datasets (files relative to `baseDir`), checks the
 * cross-field rules and computes the configs and the study id.
 */
export function resolveStudyText(text: string, file: string, baseDir: string): { study: ResolvedStudy; data: LoadedData } {
  const spec = parseSpec(text, file);
  try {
    const ownData = (d: DenoiserSpecInput) => ('dataset' in d ? d.dataset : undefined);
    const denoiserOwn = ownData(spec.denoiser);
    const compareOwn = spec.compare ? ownData(spec.compare) : undefined;
    const dataset = loadDataset(spec.dataset, baseDir, 'dataset');
    const denoiserData = denoiserOwn ? loadDataset(denoiserOwn, baseDir, 'denoiser.dataset') : dataset;
    const compareData = spec.compare ? (compareOwn ? loadDataset(compareOwn, baseDir, 'compare.dataset') : dataset) : undefined;
    checkDenoiser(spec.denoiser, denoiserData, dataset, 'denoiser');
    if (spec.compare && compareData) checkDenoiser(spec.compare, compareData, dataset, 'compare');
    const models = {
      denoiser: spec.denoiser.kind === 'tfjs' ? resolveTfjsModel(spec.denoiser, baseDir, 'denoiser', dataset) : undefined,
      compare: spec.compare?.kind === 'tfjs' ? resolveTfjsModel(spec.compare, baseDir, 'compare', dataset) : undefined,
    };
    const configs = expandConfigs(spec);
    const data = {
      dataset: info(dataset, spec.dataset),
      denoiser: denoiserOwn ? info(denoiserData, denoiserOwn) : undefined,
      compare: compareOwn && compareData ? info(compareData, compareOwn) : undefined,
    };
    const hashes = {
      dataset: dataset.contentHash,
      denoiser: data.denoiser?.contentHash,
      compare: data.compare?.contentHash,
      denoiserModel: models.denoiser?.contentHash,
      compareModel: models.compare?.contentHash,
    };
    const canonical = canonicalJson({ spec: normalisedSpec(spec), data: hashes });
    const studyId = `${spec.name}-${sha256Hex(canonical).slice(0, 10)}`;
    return { study: { spec, canonical, studyId, baseDir, data, models, configs }, data: { dataset, denoiser: denoiserData, compare: compareData } };
  } catch (err) {
    if (err instanceof SpecError && !err.file) throw new SpecError(err.field, err.detail, file);
    throw err;
  }
}

/** Reads a spec file and downloads the s3:// dataset files it names (see prefetchRemoteData). */
export async function prefetchSpecFile(path: string): Promise<void> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return; // resolveStudyFile reports it
  }
  await prefetchRemoteData(text);
}

/** Reads a spec file (YAML or JSON) and resolves it; dataset paths are relative to the file's directory. */
export function resolveStudyFile(path: string): { study: ResolvedStudy; data: LoadedData } {
  return resolveStudyText(readSpecFile(path), path, dirname(resolvePath(path)));
}
