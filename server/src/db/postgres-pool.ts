import type { PostgresPool, PostgresPoolClient } from 'kysely';
import type pg from 'pg';
import { isDatabaseUnavailable } from './unavailable.js';

/** What bounds every wait on PostgreSQL (config: DATABASE_CONNECT_TIMEOUT, DATABASE_STATEMENT_TIMEOUT). */
export interface PoolTimeouts {
  /** Opening a connection, and waiting for a free one in the pool. */
  connectTimeoutMs: number;
  /**
   * A statement: PostgreSQL cancels it after this long (statement_timeout), and the client gives
   * up a little later (query_timeout) when the server does not answer at all (hung, or a
   * connection left half-open by a failover).
   */
  statementTimeoutMs: number;
}

/** How long the client waits past statement_timeout for the server's own cancellation. */
const READ_TIMEOUT_MARGIN_MS = 2_000;

export function poolConfig(timeouts: PoolTimeouts): pg.PoolConfig {
  return {
    connectionTimeoutMillis: timeouts.connectTimeoutMs,
    statement_timeout: timeouts.statementTimeoutMs,
    // A transaction left open by a stuck instance must not hold its row locks for ever.
    idle_in_transaction_session_timeout: timeouts.statementTimeoutMs * 2,
    query_timeout: timeouts.statementTimeoutMs + READ_TIMEOUT_MARGIN_MS,
    // Notices a peer that vanished (no FIN, no RST) between queries.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
}

export interface PoolEvents {
  /** A connection failed outside any query (killed while idle, the server stopped): reported, never thrown. */
  onConnectionError(error: Error): void;
}

/**
 * Makes a pg pool survive a database that goes away. pg emits 'error' on a pool whose idle client
 * lost its connection, and on a client that lost it between two queries; an EventEmitter with no
 * 'error' listener throws, which stops the process and every tenant with it. Every client gets a
 * listener from its first connect, and so does the pool. The failed client is then discarded by
 * the pool (it is no longer queryable) and the next query opens a new connection.
 */
export function guardPool(pool: pg.Pool, events: PoolEvents): void {
  pool.on('error', (error) => events.onConnectionError(error));
  pool.on('connect', (client) => {
    client.on('error', (error) => events.onConnectionError(error));
  });
}

/**
 * The pool as Kysely sees it: a client on which a query failed because the database was
 * unreachable or did not answer in time goes back to the pool with that error, so the pool closes
 * it instead of handing out a connection that may still be waiting on a hung server or be
 * half-open. Kysely releases clients without an error of its own.
 */
export function kyselyPool(pool: pg.Pool): PostgresPool {
  const wrappers = new WeakMap<pg.PoolClient, { client: PostgresPoolClient; failed: { error?: Error } }>();
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        const failed: { error?: Error } = {};
        const query = ((text: unknown, parameters?: readonly unknown[]) => {
          // A cursor (Kysely's streaming) is not a promise; it is passed through as it is.
          if (typeof text !== 'string') return client.query(text as pg.Submittable);
          return client.query(text, parameters as unknown[]).catch((error: Error) => {
            if (isDatabaseUnavailable(error)) failed.error = error;
            throw error;
          });
        }) as unknown as PostgresPoolClient['query'];
        wrapper = {
          failed,
          client: {
            query,
            release() {
              const error = failed.error;
              failed.error = undefined;
              client.release(error);
            },
          },
        };
        wrappers.set(client, wrapper);
      }
      return wrapper.client;
    },
    end: () => pool.end(),
  };
}
