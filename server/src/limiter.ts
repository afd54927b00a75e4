import type { Logger } from 'pino';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRedis,
} from 'rate-limiter-flexible';
import type { createClient } from 'redis';
import type { Db } from './db/index.js';

export type RedisClient = ReturnType<typeof createClient>;

/**
 * node-redis (the official client): it pipelines the commands of one tick by itself, which cost
 * about a third of ioredis's client CPU per counted request in the bench (3 µs against 9 µs).
 * Connecting is not awaited: with Redis down at start the instance still starts, on the failure
 * policy, and the client reconnects in the background. Commands fail at once while it is down
 * (no offline queue), so a request never waits for Redis to come back.
 */
export async function connectRedis(url: string, log: Logger): Promise<RedisClient> {
  const { createClient } = await import('redis');
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: 2_000, reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 5_000) },
  });
  client.on('error', () => {}); // reported once per outage by watchRedis; unhandled it would crash
  client.connect().catch((error) => log.debug({ err: error }, 'redis connect failed; retrying in the background'));
  return client;
}

export interface LimiterOptions {
  keyPrefix: string;
  points: number;
  /** Window, seconds. */
  duration: number;
  /** Once the points are used up, block for this long (seconds); 0 = until the window ends. */
  blockDuration?: number;
  /**
   * While the shared store fails, count in this process's memory whatever RATE_LIMIT_STORE_FAILURE
   * says: for guards that must never stop counting nor refuse everyone (sign-in, sign-up).
   */
  countLocallyOnFailure?: boolean;
}

export type CounterStore = 'memory' | 'postgres' | 'redis';

export interface Limiters {
  create(options: LimiterOptions): RateLimiterAbstract;
  /** Where counters live. */
  store: CounterStore;
  /**
   * 'shared' (or 'local' in memory mode) when counts are exact; with Redis unreachable,
   * 'per_instance' (fail-open: each instance counts alone) or 'refusing' (fail-closed).
   */
  state(): 'local' | 'shared' | 'per_instance' | 'refusing';
  /** Stops watching the store (before a deliberate disconnect, which is not an outage). */
  close(): void;
}

export interface LimiterSetup {
  db: Db;
  redis?: RedisClient;
  /** Prefix of every counter key (tests isolate each harness with their own). */
  namespace?: string;
  /** With Redis unreachable: keep serving on per-instance counters ('open') or refuse ('closed'). */
  onStoreFailure: 'open' | 'closed';
  log: Logger;
}

/**
 * Where counters live, so several instances share one count (DESIGN: limits hold exactly across
 * instances): Redis when configured, else PostgreSQL when that is the database, else memory
 * (SQLite mode is one instance by design). rate-limiter-flexible does the counting; each store
 * increments atomically (Redis INCR, a PostgreSQL upsert), so concurrent requests cannot both
 * take the last point.
 *
 * When Redis goes away the fail-open policy hands each limiter to an in-memory insurance limiter
 * (the library's own mechanism): requests keep being served, limits hold per instance. Fail-closed
 * lets the error through and the caller refuses the request. Either way the change is logged once
 * and shown by /readyz.
 */
export function createLimiters(setup: LimiterSetup): Limiters {
  const namespace = setup.namespace ?? 'gh';
  const scoped = ({ countLocallyOnFailure: _, ...options }: LimiterOptions) => ({
    ...options,
    keyPrefix: `${namespace}:${options.keyPrefix}`,
  });
  // rate-limiter-flexible's insurance limiter takes over while the store fails.
  const insurance = (options: LimiterOptions) => ({ insuranceLimiter: new RateLimiterMemory(scoped(options)) });
  const { redis, db, log } = setup;
  if (redis) {
    const unwatch = watchRedis(redis, setup.onStoreFailure, log);
    const failOpen = setup.onStoreFailure === 'open';
    return {
      store: 'redis',
      create: (options) =>
        new RateLimiterRedis({
          ...scoped(options),
          storeClient: redis,
          useRedisPackage: true,
          rejectIfRedisNotReady: true,
          ...((failOpen || options.countLocallyOnFailure) && insurance(options)),
        }),
      state: () => (redis.isReady ? 'shared' : failOpen ? 'per_instance' : 'refusing'),
      close: unwatch,
    };
  }
  if (db.pgPool) {
    const pool = db.pgPool;
    return {
      store: 'postgres',
      create: (options) =>
        new RateLimiterPostgres({
          ...scoped(options),
          storeClient: pool,
          tableName: 'rate_limits',
          tableCreated: true,
          ...(options.countLocallyOnFailure && insurance(options)),
        }),
      state: () => 'shared',
      close: () => {},
    };
  }
  return {
    store: 'memory',
    create: (options) => new RateLimiterMemory(scoped(options)),
    state: () => 'local',
    close: () => {},
  };
}

/** Logs each change of Redis's availability once, with what it means for limits. */
function watchRedis(redis: RedisClient, onStoreFailure: 'open' | 'closed', log: Logger): () => void {
  let lost = false;
  let closing = false;
  const consequence =
    onStoreFailure === 'open'
      ? 'rate limits now count per instance (RATE_LIMIT_STORE_FAILURE=open)'
      : 'rate-limited requests are refused with 503 (RATE_LIMIT_STORE_FAILURE=closed)';
  const down = (error?: Error) => {
    if (lost || closing) return;
    lost = true;
    log.error({ err: error }, `redis unavailable: ${consequence}`);
  };
  redis.on('error', down);
  redis.on('end', () => down());
  redis.on('ready', () => {
    if (!lost) return;
    lost = false;
    log.warn('redis is back: rate limits are shared across instances again');
  });
  return () => {
    closing = true;
  };
}
