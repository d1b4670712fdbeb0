/** Queue names and job ids. BullMQ job ids may not contain ':' nor be all digits: ours are dotted and start with a name. */
export const QUEUES = {
  /** One job per (config, shard). */
  shards: 'trajlab-shards',
  /** The flow parent: one job per study, processed once every shard is done. */
  aggregate: 'trajlab-aggregate',
} as const;

/** Prefix of trajlab's own Redis keys (study registry, cancel flags). */
export const KEY_PREFIX = 'trajlab';

export const jobIds = {
  aggregate: (studyId: string) => `${studyId}.aggregate`,
  shard: (studyId: string, configId: string, shard: string) => `${studyId}.${configId}.${shard}`,
};

export const redisKeys = {
  /** Hash: out, submittedAt, configs, samples, ... */
  study: (studyId: string) => `${KEY_PREFIX}:study:${studyId}`,
  /** Set of every submitted study id. */
  studies: () => `${KEY_PREFIX}:studies`,
  /** Present once the study is cancelled. */
  cancel: (studyId: string) => `${KEY_PREFIX}:cancel:${studyId}`,
  /** List of JSON arrays of trace events, pushed by the workers and the aggregator (`submit --watch --trace`). */
  trace: (studyId: string) => `${KEY_PREFIX}:trace:${studyId}`,
};
