import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { Db } from '../../db/index.js';
import type { RedisClient } from '../../limiter.js';
import { guarded } from './guard.js';

/** An event from the outbox, as apps see it in webhooks and in the feed. */
export interface FeedEvent {
  id: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

/** Seed 004's TaskUpdate: progress of a long task, published by the app's backend. */
export interface TaskUpdate {
  taskId: string;
  status: 'pending' | 'processing' | 'completed' | 'failed';
  progress?: number;
  data?: unknown;
  error?: string;
}

/** What the feed carries: events (replayable by id), and state that is only ever live. */
export type FeedItem =
  | { kind: 'event'; event: FeedEvent }
  | { kind: 'usage'; usage: Record<string, unknown> }
  | { kind: 'task'; task: TaskUpdate };

/** A feed item and whom it is for: one user of a tenant, or (userId null) every user of it. */
export interface Envelope {
  tenantId: string;
  userId: string | null;
  item: FeedItem;
}

/**
 * Carries live messages to every instance (DESIGN: Redis pub/sub when configured, PostgreSQL
 * LISTEN/NOTIFY otherwise, in-process for one instance). `publish` delivers to this instance's
 * listeners at once and sends to the others; a message that comes back from the broker is
 * recognised by its origin and not delivered twice. Delivery to other instances is best effort:
 * what they miss while the broker is away, clients get back from the outbox when they resume.
 */
export interface RealtimeBus {
  kind: 'local' | 'redis' | 'postgres';
  publish(envelope: Envelope): void;
  /**
   * For state of which only the latest value matters (a user's usage after each LLM call): at
   * most one message per key every quarter second, carrying the latest. The envelope may be given
   * as a function, called only for the one that is sent.
   */
  publishLatest(key: string, envelope: Envelope | (() => Envelope)): void;
  /** Registers the listener of this instance's hub; returns the function that removes it. */
  listen(listener: (envelope: Envelope) => void): () => void;
  close(): Promise<void>;
}

/** Wire form between instances: the envelope and the instance that sent it. */
interface Wire {
  origin: string;
  envelope: Envelope;
}

/** The shape of what comes back from the broker (another instance, or anyone who can publish to it). */
function isWire(value: unknown): value is Wire {
  if (typeof value !== 'object' || value === null) return false;
  const { origin, envelope } = value as Partial<Wire>;
  if (typeof origin !== 'string' || typeof envelope !== 'object' || envelope === null) return false;
  const { tenantId, userId, item } = envelope;
  return (
    typeof tenantId === 'string' &&
    (userId === null || typeof userId === 'string') &&
    typeof item === 'object' &&
    item !== null &&
    typeof item.kind === 'string'
  );
}

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; events are small, but app task data may not be. */
const NOTIFY_MAX_BYTES = 7_900;

export interface BusSetup {
  config: Config;
  db: Db;
  redis?: RedisClient;
  log: Logger;
  /** Keeps harnesses that share a Redis or a PostgreSQL database apart (as rate-limit keys are). */
  namespace?: string;
}

/** How long `publishLatest` gathers changes of one key. */
const COALESCE_MS = 250;

export async function createRealtimeBus(setup: BusSetup): Promise<RealtimeBus> {
  const bus = await createBroker(setup);
  const latest = new Map<string, Envelope | (() => Envelope)>();
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    const due = [...latest.values()];
    latest.clear();
    // Each on its own: one envelope that cannot be built or sent does not hold back the others.
    for (const envelope of due) {
      guarded(setup.log, 'coalesced publish', () =>
        bus.publish(typeof envelope === 'function' ? envelope() : envelope),
      )();
    }
  };
  return {
    ...bus,
    publishLatest(key, envelope) {
      latest.set(key, envelope);
      if (!timer) {
        timer = setTimeout(flush, COALESCE_MS);
        timer.unref();
      }
    },
    async close() {
      clearTimeout(timer);
      latest.clear();
      await bus.close();
    },
  };
}

async function createBroker(setup: BusSetup): Promise<Omit<RealtimeBus, 'publishLatest'>> {
  const { config, db, redis, log } = setup;
  const choice = config.realtime.broker;
  const kind =
    choice !== 'auto' ? choice : redis ? 'redis' : db.dialect === 'postgres' && db.pgPool ? 'postgres' : 'local';
  const origin = randomBytes(8).toString('hex');
  const listeners = new Set<(envelope: Envelope) => void>();
  const deliver = (envelope: Envelope) => {
    for (const listener of listeners) {
      try {
        listener(envelope);
      } catch (error) {
        log.error({ err: error }, 'realtime delivery failed');
      }
    }
  };
  // Called by the Redis client and the LISTEN connection: nothing may escape into them.
  const receive = guarded(log, 'broker message', (text: string) => {
    let wire: unknown;
    try {
      wire = JSON.parse(text);
    } catch {
      return;
    }
    if (!isWire(wire)) {
      log.warn('realtime: a broker message that is not an envelope was dropped');
      return;
    }
    if (wire.origin !== origin) deliver(wire.envelope);
  });
  let failing = false;
  const sendFailed = (error: unknown) => {
    if (!failing)
      log.warn({ err: error }, 'realtime broker unreachable: other instances miss live messages until it is back');
    failing = true;
  };
  const sent = () => {
    if (failing) log.info('realtime broker reachable again');
    failing = false;
  };
  const base = {
    listen(listener: (envelope: Envelope) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };

  if (kind === 'redis') {
    if (!redis) throw new Error('REALTIME_BROKER=redis needs REDIS_URL');
    const channel = `${setup.namespace ?? 'gh'}:realtime`;
    const subscriber = redis.duplicate();
    subscriber.on('error', () => {}); // the publisher's failures are the ones reported
    subscriber
      .connect()
      .then(() => subscriber.subscribe(channel, receive))
      .catch((error) => log.warn({ err: error }, 'realtime: could not subscribe on Redis; retrying in the background'));
    return {
      ...base,
      kind,
      publish(envelope) {
        deliver(envelope);
        try {
          redis.publish(channel, JSON.stringify({ origin, envelope } satisfies Wire)).then(sent, sendFailed);
        } catch (error) {
          sendFailed(error);
        }
      },
      async close() {
        listeners.clear();
        await subscriber.close().catch(() => subscriber.destroy());
      },
    };
  }

  if (kind === 'postgres') {
    const pool = db.pgPool;
    if (!pool) throw new Error('REALTIME_BROKER=postgres needs DATABASE_URL');
    const channel = `gatehouse_realtime${setup.namespace ? `_${setup.namespace.replace(/[^a-z0-9_]/gi, '_')}` : ''}`;
    const listener = await listenOnPostgres(pool, channel, receive, log);
    return {
      ...base,
      kind,
      publish(envelope) {
        deliver(envelope);
        let payload: string;
        try {
          payload = JSON.stringify({ origin, envelope } satisfies Wire);
        } catch (error) {
          log.error({ err: error }, 'realtime message could not be serialised; other instances miss it');
          return;
        }
        if (Buffer.byteLength(payload) > NOTIFY_MAX_BYTES) {
          log.warn(
            { bytes: Buffer.byteLength(payload) },
            'realtime message too large for NOTIFY; other instances miss it',
          );
          return;
        }
        try {
          sql`select pg_notify(${channel}, ${payload})`.execute(db.kysely).then(sent, sendFailed);
        } catch (error) {
          sendFailed(error);
        }
      },
      async close() {
        listeners.clear();
        await listener.close();
      },
    };
  }

  return {
    ...base,
    kind: 'local',
    publish: deliver,
    async close() {
      listeners.clear();
    },
  };
}

/**
 * A dedicated connection LISTENing on the channel (a pooled one would be handed to queries),
 * reconnected after a second when it drops.
 */
async function listenOnPostgres(pool: pg.Pool, channel: string, receive: (text: string) => void, log: Logger) {
  const { default: pgModule } = await import('pg');
  let client: pg.Client | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  const reconnectLater = () => {
    retry = setTimeout(
      guarded(log, 'LISTEN reconnect', () => connect()),
      1_000,
    );
  };
  const connect = async () => {
    const next = new pgModule.Client(pool.options);
    next.on('notification', (message) => {
      if (message.channel === channel && message.payload) receive(message.payload);
    });
    next.on(
      'error',
      guarded(log, 'LISTEN connection error', (error: Error) => {
        log.warn({ err: error }, 'realtime: LISTEN connection lost; reconnecting');
        next.end().catch(() => {});
        if (closed || client !== next) return; // a failed connect retries by itself, below
        client = undefined;
        reconnectLater();
      }),
    );
    try {
      await next.connect();
      await next.query(`LISTEN "${channel}"`);
      if (closed) {
        await next.end();
        return;
      }
      client = next;
    } catch (error) {
      next.end().catch(() => {});
      if (closed) return;
      log.warn({ err: error }, 'realtime: could not LISTEN on PostgreSQL; retrying');
      reconnectLater();
    }
  };
  await connect();
  return {
    async close() {
      closed = true;
      clearTimeout(retry);
      await client?.end().catch(() => {});
    },
  };
}
