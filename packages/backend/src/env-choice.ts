// Imports nothing, so processes that must not load a tensor backend (the worker's main process) use it too, through
// `@trajlab/backend/env-choice`.

/**
 * One of `choices`, read from the environment variable `name` (trimmed, any case; unset: `fallback`). Anything else
 * throws `error(message)`, the message naming the variable, the choices and the value given.
 */
export function envChoice<T extends string>(env: NodeJS.ProcessEnv, name: string, choices: readonly T[], fallback: T, error: (message: string) => Error): T {
  const v = (env[name] ?? fallback).trim().toLowerCase();
  if ((choices as readonly string[]).includes(v)) return v as T;
  throw error(`${name} must be one of ${choices.join(', ')}; got '${env[name]}'`);
}
