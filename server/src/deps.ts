import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { type AuthCache, createAuthCache } from './auth-cache.js';
import type { Config } from './config.js';
import { createDb, type Db, type DbOptions, sqliteFile } from './db/index.js';
import { createLastUsedBuffer, type LastUsedBuffer } from './db/last-used.js';
import { createRealtimeBus, type RealtimeBus } from './features/realtime/bus.js';
import { createKeyring, type Keyring } from './features/signing-keys/signing-keys.service.js';
import { type BudgetLeases, createBudgetLeases } from './features/usage/budget-leases.js';
import { createRequestCounter, type RequestCounter } from './features/usage/request-counter.js';
import { createIds, type Ids } from './lib/ids.js';
import { createMasterKey, type MasterKey } from './lib/master-key.js';
import { createOutbound, type Outbound } from './lib/outbound.js';
import { createPasswordHasher, type PasswordHasher } from './lib/password-hasher.js';
import { connectRedis, createLimiters, type Limiters, type RedisClient } from './limiter.js';

export interface Clock {
  now(): number;
}

/** Everything a service needs, passed explicitly (CONVENTIONS: plain functions, explicit deps). */
export interface Deps {
  config: Config;
  db: Db;
  clock: Clock;
  ids: Ids;
  log: Logger;
  masterKey: MasterKey;
  keyring: Keyring;
  passwords: PasswordHasher;
  limiters: Limiters;
  redis?: RedisClient;
  metrics: Registry;
  lastUsed: LastUsedBuffer;
  /** Requests counted for the usage rollups, written every few seconds. */
  requestCounts: RequestCounter;
  /** Slices of users' token budgets this instance holds for LLM calls (ADR 0011). */
  budgetLeases: BudgetLeases;
  caches: { auth: AuthCache };
  /** HTTP to tenant-chosen addresses (LLM providers), under the outbound address policy. */
  outbound: Outbound;
  /** Live messages to users' realtime connections, on every instance. */
  realtime: RealtimeBus;
}

export interface DepsOptions {
  config: Config;
  log: Logger;
  masterKey: Buffer;
  /** Overrides the database chosen by config (the test harness uses in-memory SQLite or a schema). */
  dbOptions?: DbOptions;
  clock?: Clock;
  /** Prefix of rate-limit keys in shared stores (tests isolate each harness with their own). */
  limiterNamespace?: string;
  /** Process-wide metrics (CPU, memory, event loop); off in tests where many apps share a process. */
  defaultMetrics?: boolean;
}

export function dbOptionsFromConfig(config: Config): DbOptions {
  return config.databaseUrl
    ? { dialect: 'postgres', connectionString: config.databaseUrl, timeouts: config.database }
    : { dialect: 'sqlite', filename: sqliteFile(config.dataDir) };
}

/**
 * A connection lost outside any query is logged, never thrown: the pool opens a new one for the
 * next query, and requests answer 503 database_unavailable until the database is back.
 */
function withConnectionLog(options: DbOptions, log: Logger): DbOptions {
  if (options.dialect !== 'postgres') return options;
  return {
    ...options,
    onConnectionError: (error) => log.warn({ err: error }, 'database connection lost; reconnecting on next use'),
  };
}

export async function createDeps(options: DepsOptions): Promise<Deps> {
  const { config, log } = options;
  const clock = options.clock ?? { now: () => Date.now() };
  const db = await createDb(withConnectionLog(options.dbOptions ?? dbOptionsFromConfig(config), log));
  const ids = createIds(() => clock.now());
  const masterKey = createMasterKey(options.masterKey);
  // The Redis client is loaded only when configured: we would otherwise carry it idle.
  const redis = config.redisUrl ? await connectRedis(config.redisUrl, log) : undefined;
  const metrics = new Registry();
  const realtime = await createRealtimeBus({ config, db, redis, log, namespace: options.limiterNamespace });
  if (options.defaultMetrics) collectDefaultMetrics({ register: metrics });
  return {
    config,
    db,
    clock,
    ids,
    log,
    masterKey,
    keyring: createKeyring({
      db: db.kysely,
      masterKey,
      ids,
      now: () => clock.now(),
      issuer: config.publicUrl,
      maxAccessTtlMs: config.tokens.maxAccessTtlMs,
    }),
    passwords: createPasswordHasher(config.hashing),
    limiters: createLimiters({
      db,
      redis,
      namespace: options.limiterNamespace,
      onStoreFailure: config.limits.onStoreFailure,
      log,
    }),
    redis,
    metrics,
    lastUsed: createLastUsedBuffer(db.kysely),
    requestCounts: createRequestCounter(),
    budgetLeases: createBudgetLeases(),
    caches: {
      auth: createAuthCache(config.authCacheTtlMs),
    },
    outbound: createOutbound(config.outboundAllowedNetworks),
    realtime,
  };
}

export async function closeDeps(deps: Deps): Promise<void> {
  await deps.lastUsed.flush().catch((error) => deps.log.error({ err: error }, 'could not flush last-used times'));
  await deps.realtime.close();
  deps.limiters.close();
  deps.redis?.destroy();
  await deps.outbound.close();
  await deps.db.close();
}
