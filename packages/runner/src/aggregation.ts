/**
 * A finished study's aggregation, from its study.json alone: the embedded run, `trajlab aggregate` and the aggregator
 * service share it.
 */
import { TRAJLAB_VERSION } from '@trajlab/core';
import { aggregateShards, StudyFold, type AggregateConfig } from '@trajlab/results';
import { RememberingStore, type ObjectStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';

/** The parts of study.json the aggregator reads. */
interface StudyJsonPlan {
  studyId: string;
  trajlabVersion: string;
  canonicalSpec: string;
  plan: { configs: { configId: string; role: 'study' | 'reference'; solver: string; schedule: string; steps: number; nfe: number; shards: string[] }[] };
}

/** What aggregating a study takes from its study.json: its configs with their shard keys in sample order, and the spec. */
export async function studyAggregation(store: ObjectStore, studyId: string): Promise<{ configs: AggregateConfig[]; spec: string }> {
  const doc = JSON.parse(new TextDecoder().decode(await store.get(studyKeys.studyJson(studyId)))) as StudyJsonPlan;
  const configs: AggregateConfig[] = doc.plan.configs.map((c) => ({
    configId: c.configId,
    solver: c.solver,
    schedule: c.schedule,
    steps: c.steps,
    role: c.role,
    nfe: c.nfe,
    samplesKeys: c.shards.map((s) => studyKeys.shard(studyId, c.configId, s, 'samples')),
    stepsKeys: c.shards.map((s) => studyKeys.shard(studyId, c.configId, s, 'steps')),
  }));
  return { configs, spec: doc.canonicalSpec };
}

/** True when two config lists have the same configs and shard keys in the same order. */
function sameConfigs(a: AggregateConfig[], b: AggregateConfig[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Merges the shards of a finished study into summary.arrow and curves.arrow, from study.json alone (so the embedded
 * run, `trajlab aggregate` and the aggregator service share one path). Shards are read in sample order. `fold`: the
 * shards already folded while the study ran (the aggregator service), used if it was made from the same study.json;
 * the rest is read and folded into it. Returns the paths and how many shard files `fold` held already.
 */
export async function aggregateStudy(store: ObjectStore, studyId: string, fold?: StudyFold): Promise<{ summary: string; curves: string; foldedBefore: number }> {
  const { configs, spec } = await studyAggregation(store, studyId);
  const state = fold && sameConfigs(fold.configs, configs) ? fold : new StudyFold(configs);
  const foldedBefore = state.foldedFiles();
  const res = await aggregateShards(state.configs, (key) => store.get(key), { version: TRAJLAB_VERSION, studyId, spec }, state);
  await Promise.all([store.put(studyKeys.summary(studyId), res.summary), store.put(studyKeys.curves(studyId), res.curves)]);
  return { summary: store.locate(studyKeys.summary(studyId)), curves: store.locate(studyKeys.curves(studyId)), foldedBefore };
}

/**
 * The store a finished study's aggregation and then its report go through: it keeps in memory what the report reads
 * again (every shard's samples, study.json, the summary and curves just written; not the steps files, which the report
 * does not read), so over S3 the report sends no second request for them.
 */
export function aggregationStore(store: ObjectStore): ObjectStore {
  return new RememberingStore(store, { keep: (key) => !key.endsWith('.steps.arrow') });
}
