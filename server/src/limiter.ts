import type { Redis } from 'ioredis';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRedis,
} from 'rate-limiter-flexible';
import type { Db } from './db/index.js';

export interface LimiterOptions {
  keyPrefix: string;
  points: number;
  /** Window, seconds. */
  duration: number;
  /** Once the points are used up, block for this long (seconds); 0 = until the window ends. */
  blockDuration?: number;
}

export type LimiterFactory = (options: LimiterOptions) => RateLimiterAbstract;

/**
 * Where counters live, so several instances share one count (DESIGN: limits hold exactly across
 * instances): Redis when configured, else PostgreSQL when that is the database, else memory
 * (SQLite mode is one instance by design). With Redis, an in-memory insurance limiter takes over
 * while Redis is unreachable, so requests keep being served.
 */
export function createLimiterFactory(db: Db, redis: Redis | undefined, namespace = 'gh'): LimiterFactory {
  const scoped = (options: LimiterOptions) => ({ ...options, keyPrefix: `${namespace}:${options.keyPrefix}` });
  if (redis) {
    return (options) =>
      new RateLimiterRedis({
        ...scoped(options),
        storeClient: redis,
        rejectIfRedisNotReady: true,
        insuranceLimiter: new RateLimiterMemory(scoped(options)),
      });
  }
  if (db.pgPool) {
    const pool = db.pgPool;
    return (options) =>
      new RateLimiterPostgres({ ...scoped(options), storeClient: pool, tableName: 'rate_limits', tableCreated: true });
  }
  return (options) => new RateLimiterMemory(scoped(options));
}
