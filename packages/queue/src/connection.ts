import type { RedisOptions } from 'ioredis';

/** Redis connection settings from REDIS_URL (redis:// or rediss://, optional user:password and /db). */
export interface RedisSettings {
  /** ioredis options for BullMQ (maxRetriesPerRequest null, as BullMQ workers require). */
  connection: RedisOptions;
  /** The URL with any password replaced by ***, for messages and logs. */
  display: string;
}

/** A REDIS_URL that cannot be used. */
export class RedisUrlError extends Error {
  override name = 'RedisUrlError';
}

/** Hides credentials in a Redis URL. */
export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, auth: string) => `//${auth.includes(':') ? `${auth.split(':')[0]}:***` : '***'}@`);
}

/** Parses REDIS_URL. @defaultValue redis://127.0.0.1:6379 */
export function redisSettings(url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'): RedisSettings {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RedisUrlError(`REDIS_URL is not a URL: '${redactRedisUrl(url)}'`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new RedisUrlError(`REDIS_URL must start with redis:// or rediss://; got '${u.protocol}//'`);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new RedisUrlError(`REDIS_URL database '${u.pathname.slice(1)}' is not a number`);
  return {
    connection: {
      host: u.hostname,
      port: u.port ? Number(u.port) : 6379,
      username: u.username ? decodeURIComponent(u.username) : undefined,
      password: u.password ? decodeURIComponent(u.password) : undefined,
      db,
      tls: u.protocol === 'rediss:' ? {} : undefined,
      maxRetriesPerRequest: null,
    },
    display: redactRedisUrl(url),
  };
}
