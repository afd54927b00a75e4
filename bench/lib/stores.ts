import pg from 'pg';
import { createClient } from 'redis';

/** Whether an optional store answered; `reason` says why not, for the skipped row. */
export type Reachable = { ok: true } | { ok: false; reason: string };

const reason = (error: unknown) => (error instanceof Error ? error.message || error.name : String(error));

/** Rejects after `ms`, so a store that accepts the connection and then says nothing cannot hang the bench. */
function deadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/** A TCP connect and PING, no retries: the bench only uses Redis when it is already there. */
export async function redisReachable(url: string, timeoutMs = 2_000): Promise<Reachable> {
  const redis = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: timeoutMs, reconnectStrategy: false },
  });
  // The 'error' event has the cause (ECONNREFUSED, ETIMEDOUT…); unhandled it would crash.
  let cause: unknown;
  redis.on('error', (error) => {
    cause = error;
  });
  try {
    const pong = await deadline(
      redis.connect().then(() => redis.ping()),
      timeoutMs,
      'PING',
    );
    return pong === 'PONG' ? { ok: true } : { ok: false, reason: `PING answered ${pong}` };
  } catch (error) {
    return { ok: false, reason: reason(cause ?? error) };
  } finally {
    redis.destroy();
  }
}

/** Connects and runs `select 1`; the bench creates (and drops) a database of its own there. */
export async function postgresReachable(url: string, timeoutMs = 2_000): Promise<Reachable> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  try {
    await deadline(
      client.connect().then(() => client.query('select 1')),
      timeoutMs,
      'select 1',
    );
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: reason(error) };
  } finally {
    await client.end().catch(() => {});
  }
}

/** The URL with its password masked, for the report. */
export function shown(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}
