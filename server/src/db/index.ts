import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Transaction } from 'kysely';
import type pg from 'pg';
import { migrations } from './migrations/index.js';
import { guardPool, kyselyPool, type PoolTimeouts, poolConfig } from './postgres-pool.js';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Db {
  kysely: Kysely<Database>;
  dialect: Dialect;
  /** The pg pool when on PostgreSQL (rate limiter stores and LISTEN/NOTIFY need it). */
  pgPool?: pg.Pool;
  /** The PostgreSQL schema in use when not the default search path. */
  schema?: string;
  /**
   * PostgreSQL: a connection of its own for migrations, without the statement timeouts that bound
   * serving traffic (an index built on a large table may take minutes).
   */
  migrationConnection?: () => { kysely: Kysely<Database>; close(): Promise<void> };
  close(): Promise<void>;
}

export type DbOptions =
  | { dialect: 'sqlite'; filename: string }
  | {
      dialect: 'postgres';
      connectionString: string;
      schema?: string;
      max?: number;
      /** Bounds on connecting and on statements (DATABASE_CONNECT_TIMEOUT, DATABASE_STATEMENT_TIMEOUT). */
      timeouts?: PoolTimeouts;
      /** A connection lost outside any query (the database restarted, a backend was killed). */
      onConnectionError?: (error: Error) => void;
    };

/** Used when a caller gives none: the defaults of DATABASE_CONNECT_TIMEOUT and DATABASE_STATEMENT_TIMEOUT. */
const DEFAULT_TIMEOUTS: PoolTimeouts = { connectTimeoutMs: 5_000, statementTimeoutMs: 30_000 };

/** The SQLite file used when DATABASE_URL is absent. */
export function sqliteFile(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true });
  return join(dataDir, 'gatehouse.db');
}

const commitHooks = new WeakMap<Kysely<Database>, (() => void)[]>();

/**
 * Runs `work` in a transaction and then, once it has committed, what it asked for with
 * `afterCommit` (telling live listeners about events: nothing is announced that rolled back).
 * Every transaction in the code base starts here.
 */
export async function transaction<T>(
  db: Kysely<Database>,
  work: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  const hooks: (() => void)[] = [];
  const result = await db.transaction().execute((trx) => {
    commitHooks.set(trx, hooks);
    return work(trx);
  });
  // The change is committed whatever a hook does: a failing hook must not make it look failed.
  for (const hook of hooks) {
    try {
      hook();
    } catch (error) {
      process.emitWarning(`after-commit hook failed: ${(error as Error).message}`);
    }
  }
  return result;
}

/** Runs `hook` once `db`'s transaction commits; at once when `db` is not a transaction (its statements are committed). */
export function afterCommit(db: Kysely<Database>, hook: () => void): void {
  if (!db.isTransaction) {
    hook();
    return;
  }
  const hooks = commitHooks.get(db);
  if (!hooks) throw new Error('afterCommit needs a transaction begun with transaction() from db/index.ts');
  hooks.push(hook);
}

// pg returns BIGINT as strings by default; our bigints are epoch milliseconds, well within 2^53.
const PG_INT8 = 20;
/** Opens the database. `pg` is loaded only for PostgreSQL, so SQLite mode does not carry it in memory. */
export async function createDb(options: DbOptions): Promise<Db> {
  if (options.dialect === 'sqlite') {
    const database = new SQLite(options.filename);
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = NORMAL');
    database.pragma('foreign_keys = ON');
    database.pragma('busy_timeout = 5000');
    const kysely = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(database) }) });
    return { kysely, dialect: 'sqlite', close: () => kysely.destroy() };
  }
  const { default: pgModule } = await import('pg');
  const pgTypes = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === PG_INT8
        ? (value: string) => Number(value)
        : pgModule.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  const base = {
    connectionString: options.connectionString,
    types: pgTypes,
    // A per-test schema (harness) or an operator-chosen one.
    options: options.schema ? `-c search_path=${options.schema}` : undefined,
  };
  const timeouts = options.timeouts ?? DEFAULT_TIMEOUTS;
  const onConnectionError = options.onConnectionError ?? (() => {});
  const pool = new pgModule.Pool({ ...base, ...poolConfig(timeouts), max: options.max ?? 10 });
  guardPool(pool, { onConnectionError });
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool: kyselyPool(pool) }) });
  const migrationConnection = () => {
    const single = new pgModule.Pool({ ...base, connectionTimeoutMillis: timeouts.connectTimeoutMs, max: 1 });
    guardPool(single, { onConnectionError });
    const migrating = new Kysely<Database>({ dialect: new PostgresDialect({ pool: kyselyPool(single) }) });
    return { kysely: migrating, close: () => migrating.destroy() };
  };
  return {
    kysely,
    dialect: 'postgres',
    pgPool: pool,
    schema: options.schema,
    migrationConnection,
    close: () => kysely.destroy(),
  };
}

/**
 * Kysely's SQLite driver prepares every query anew, and parsing the SQL was a quarter of the cost
 * of an authenticated request. Statements are pure functions of their SQL text, so reuse them.
 * Kysely runs one query at a time on this connection and reads results with `all()`, never by
 * iterating, so a shared statement is never in use twice at once.
 */
function withStatementCache(database: SQLite.Database): SQLite.Database {
  const statements = new Map<string, SQLite.Statement>();
  return new Proxy(database, {
    get(target, property) {
      if (property === 'prepare') {
        return (source: string) => {
          let statement = statements.get(source);
          if (!statement) {
            statement = target.prepare(source);
            // Queries built with dynamic IN-lists could grow this without bound; keep it a cache.
            if (statements.size >= 1_000) statements.clear();
            statements.set(source, statement);
          }
          return statement;
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Runs every pending migration; throws with the failing migration's error. */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const connection = db.migrationConnection?.();
  try {
    const migrator = new Migrator({
      db: connection?.kysely ?? db.kysely,
      provider: { getMigrations: async () => migrations },
      // Kysely looks for its bookkeeping tables in every schema unless told which one is ours.
      migrationTableSchema: db.schema,
    });
    const { error, results } = await migrator.migrateToLatest();
    if (error) throw error instanceof Error ? error : new Error(String(error));
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  } finally {
    await connection?.close();
  }
}

/**
 * `select 1`, answered within `timeoutMs` or rejected: /readyz must say "not ready" in bounded time
 * when the database hangs (the query itself is left to the pool's own timeouts).
 */
export async function pingDb(db: Db, timeoutMs = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ping = sql`select 1`.execute(db.kysely);
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the database did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([ping, late]);
  } finally {
    clearTimeout(timer);
    ping.catch(() => {}); // the loser of the race may still fail; it has been answered for
  }
}

/** True for a unique-constraint violation on either dialect (repos map it to `conflict`). */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/**
 * `SELECT … FOR UPDATE` on PostgreSQL; SQLite has no row locks and needs none (its transactions
 * are serialised on the one connection).
 */
export function lockForUpdate<Q extends { forUpdate(): Q }>(query: Q, dialect: Dialect): Q {
  return dialect === 'postgres' ? query.forUpdate() : query;
}

/** JSON columns are text in both dialects. */
export const json = {
  write: (value: unknown): string => JSON.stringify(value ?? null),
  read: <T>(text: string | null | undefined, fallback: T): T => {
    if (text == null) return fallback;
    try {
      return JSON.parse(text) as T;
    } catch {
      return fallback;
    }
  },
};
