import { TRAJLAB_VERSION } from '@trajlab/core';
import type { BackendInfo } from '@trajlab/backend';
import type { ResolvedStudy, StudyPlan } from '@trajlab/study';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function packageVersion(name: string): string {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Versions of what produced the numbers. */
export function versions(): Record<string, string> {
  return {
    trajlab: TRAJLAB_VERSION,
    node: process.versions.node,
    '@tensorflow/tfjs-core': packageVersion('@tensorflow/tfjs-core'),
    'apache-arrow': packageVersion('apache-arrow'),
  };
}

/** study.json: the resolved spec, the plan, versions, backend and (when done) timings. */
export function studyJson(study: ResolvedStudy, plan: StudyPlan, backend: BackendInfo | null, extra: Record<string, unknown>): Uint8Array {
  const doc = {
    studyId: study.studyId,
    trajlabVersion: TRAJLAB_VERSION,
    spec: study.spec,
    canonicalSpec: study.canonical,
    data: study.data,
    // local directories are left out: they differ between machines, the content hash identifies the model
    models: Object.fromEntries(Object.entries(study.models).filter(([, m]) => m).map(([k, m]) => [k, { uri: m!.uri, file: m!.file, contentHash: m!.contentHash, format: m!.format, weights: m!.weights, trainedOn: m!.trainedOn }])),
    plan: {
      shardSize: plan.shardSize,
      requestedShardSize: plan.requestedShardSize,
      notes: plan.notes,
      totals: plan.totals,
      configs: plan.configs.map((c) => ({
        configId: c.configId,
        role: c.role,
        solver: c.solver,
        schedule: c.schedule,
        rho: c.rho,
        steps: c.steps,
        nfe: c.nfe,
        denoiseToZero: c.denoiseToZero,
        sigmas: c.sigmas,
        shards: c.shards.map((s) => s.name),
      })),
    },
    backend,
    versions: versions(),
    ...extra,
  };
  return new TextEncoder().encode(`${JSON.stringify(doc, null, 2)}\n`);
}
