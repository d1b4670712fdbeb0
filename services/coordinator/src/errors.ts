// The distributed commands' errors, in a module of their own so that the CLI can tell them apart without loading
// BullMQ (distributed.ts is imported only by the commands that talk to Redis).

/** Redis cannot be reached or refused us: a clear message, no stack trace (exit code 1). */
export class RedisUnavailableError extends Error {
  override name = 'RedisUnavailableError';
}

/** A study id that is not known to this Redis (exit code 2). */
export class UnknownStudyError extends Error {
  override name = 'UnknownStudyError';
}

/** Wrong command-line usage (exit code 2). */
export class UsageError extends Error {
  override name = 'UsageError';
}
