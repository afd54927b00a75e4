import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import { authenticateBearer } from '../../http/authenticate.js';
import type { UserPrincipal } from '../../http/principal.js';
import { meterRequest } from '../usage/usage.service.js';
import type { FeedItem } from './bus.js';
import { OFFSET_PATTERN, positionAt, replaySince } from './feed.js';
import { guarded, runGuarded } from './guard.js';
import type { Hub } from './hub.js';

/** Seed 004's message, plus `pong` (the answer to a client's `ping`). */
export interface OutMessage {
  type: 'auth' | 'update' | 'complete' | 'error' | 'pong';
  data: unknown;
  timestamp: number;
  correlationId?: string;
}

/** A credential the resolver refused (401, 403), as opposed to one it could not check. */
function refused(error: unknown): error is AppError {
  return error instanceof AppError && (error.status === 401 || error.status === 403);
}

/**
 * Close codes (1000–2999 are RFC 6455 §7.4.1's, 4000–4999 the application's, §7.4.2);
 * docs/realtime.md lists them.
 */
export const CLOSE = {
  /** The credential is not (or no longer) good: invalid, revoked, or another user's. */
  unauthorized: 4001,
  tokenExpired: 4002,
  authTimeout: 4003,
  /** Too many messages queued for a client that does not read them. */
  slowConsumer: 4008,
  rateLimited: 4029,
  shuttingDown: 1001,
  /** A message over the size bound for the socket's state (RFC 6455 §7.4.1). */
  messageTooBig: 1009,
  /** Handling something for this connection failed inside the server; it was logged (RFC 6455 §7.4.1). */
  internalError: 1011,
} as const;

/** A client that lets this much pile up unsent is dropped; it resumes from its offset when it reconnects. */
const MAX_BUFFERED_BYTES = 4 * 1_048_576;
/** A refresh is asked for this long before the credential expires. */
const REFRESH_LEAD_MS = 60_000;
/**
 * How often a live connection's credential is resolved again. Revocations normally close sockets
 * at once through their events; this catches what no event announces (a rotated key's old secret
 * reaching the end of its overlap) and an event another instance missed.
 */
export const REVALIDATE_SECONDS = 60;
/** setTimeout's longest delay; a later expiry is rescheduled on the way. */
const MAX_TIMER_MS = 2_147_483_647;

/** One socket or event stream, as the feed sees it. */
export interface Transport {
  /** `text` is `message` serialised (once for every recipient of a broadcast). */
  send(message: OutMessage, text: string): void;
  close(code: number, reason: string): void;
  /** Bytes queued and not yet written. */
  buffered(): number;
}

export function outMessage(type: OutMessage['type'], data: unknown, correlationId?: string): OutMessage {
  return correlationId === undefined
    ? { type, data, timestamp: Date.now() }
    : { type, data, timestamp: Date.now(), correlationId };
}

export function errorMessage(error: unknown, correlationId?: string): OutMessage {
  const known = error instanceof AppError;
  return outMessage(
    'error',
    {
      code: known ? error.code : 'internal_error',
      message: known ? error.message : 'Something went wrong',
      ...(known && error.options.details !== undefined && { details: error.options.details }),
    },
    correlationId,
  );
}

/**
 * One authenticated (or authenticating) client of the feed, over a WebSocket or SSE. It holds
 * the credential it was opened with: when that expires it asks for a fresh one ahead of time,
 * keeps running when one comes (Supabase's top complaint is a channel that dies silently here),
 * and closes with a reason when none does; a revoked session or key closes it at once.
 */
export class FeedConnection {
  principal: UserPrincipal | null = null;
  private authorization = '';
  private validUntil = Number.POSITIVE_INFINITY;
  private timers: NodeJS.Timeout[] = [];
  /** Which second of the hub's revalidation round checks this connection again. */
  readonly slot = Math.floor(Math.random() * REVALIDATE_SECONDS);
  /** Live messages held while the replay is sent, so they follow it in order. */
  private held: { message: OutMessage; text: string }[] | null = null;
  /** While the replay is sent: the events sent, so one both replayed and held goes out once. */
  private sentEvents: Set<string> | null = null;
  closed = false;
  /** Aborted when the connection closes (its LLM requests stop). */
  readonly gone = new AbortController();

  constructor(
    private readonly deps: Deps,
    private readonly hub: Hub,
    private readonly transport: Transport,
  ) {}

  /**
   * First authentication: resolves the credential as HTTP does, counts the connection as one
   * request against the user's limits, joins the hub, and sends the `auth` answer with what was
   * missed since `offset` (and `recovered`). Returns false when the connection was refused.
   */
  async open(token: string, offset: string | undefined): Promise<boolean> {
    if (offset !== undefined && !OFFSET_PATTERN.test(offset)) {
      this.send(
        errorMessage(
          new AppError('validation_failed', 'offset must be an event id (evt_…) received from this feed', {
            details: { fields: [{ field: 'offset', in: 'body', message: 'must be an event id (evt_…)' }] },
          }),
        ),
      );
      offset = undefined;
    }
    const principal = await this.resolve(token);
    if (!principal) return false;
    try {
      await new Promise<void>((resolve, reject) =>
        meterRequest(this.deps, { header: () => undefined }, principal, (error) => (error ? reject(error) : resolve())),
      );
    } catch (error) {
      if (!(error instanceof AppError && error.status === 429)) throw error; // a failure, not a limit
      this.send(errorMessage(error));
      this.close(CLOSE.rateLimited, 'rate_limited');
      return false;
    }
    if (this.closed) return false;
    this.held = [];
    this.sentEvents = new Set();
    this.hub.add(this);
    const position = positionAt(this.deps.clock.now());
    const replay = offset
      ? await replaySince(this.deps, principal.tenantId, principal.userId, offset).catch((error: unknown) => {
          // The client is told `recovered: false` and reloads what it shows.
          this.deps.log.warn({ err: error }, 'realtime: replay failed');
          return null;
        })
      : null;
    this.send(
      outMessage('auth', {
        status: 'ok',
        ...this.identity(),
        offset: position,
        recovered: replay?.recovered ?? false,
      }),
    );
    if (this.closed) return false;
    for (const event of replay?.events ?? []) this.deliver({ kind: 'event', event }, true);
    const held = this.held;
    this.held = null;
    for (const { message, text } of held) this.write(message, text);
    this.sentEvents = null;
    this.scheduleExpiry();
    return true;
  }

  /** A fresh credential on a live connection: it must be the same user's. */
  async reauthenticate(token: string): Promise<void> {
    const before = this.principal;
    const principal = await this.resolve(token, before);
    if (!principal) return;
    this.send(outMessage('auth', { status: 'ok', ...this.identity() }));
    this.scheduleExpiry();
  }

  /**
   * Resolves `token`, or closes the connection saying why it was refused. A credential that could
   * not be checked (the database is away) is a failure, not a refusal: it is thrown, and the
   * caller's guard closes with 1011, which clients retry (4001 tells them to stop or re-login).
   */
  private async resolve(token: string, current: UserPrincipal | null = null): Promise<UserPrincipal | null> {
    const authorization = `Bearer ${token}`;
    let resolved: Awaited<ReturnType<typeof authenticateBearer>>;
    try {
      resolved = await authenticateBearer(this.deps, authorization);
    } catch (error) {
      if (!refused(error)) throw error;
      this.send(errorMessage(error));
      this.close(CLOSE.unauthorized, error.code);
      return null;
    }
    const { principal } = resolved;
    if (principal.kind !== 'user') {
      this.send(
        errorMessage(new AppError('forbidden', 'The realtime feed is for users: send an access token or API key')),
      );
      this.close(CLOSE.unauthorized, 'forbidden');
      return null;
    }
    if (current && (principal.tenantId !== current.tenantId || principal.userId !== current.userId)) {
      this.send(
        errorMessage(new AppError('forbidden', "A connection's credential can only be replaced by the same user's")),
      );
      this.close(CLOSE.unauthorized, 'user_mismatch');
      return null;
    }
    if (this.closed) return null;
    this.principal = principal;
    this.authorization = authorization;
    this.validUntil = resolved.validUntil;
    return principal;
  }

  private identity() {
    const principal = this.principal as UserPrincipal;
    return {
      tenant_id: principal.tenantId,
      user_id: principal.userId,
      session_id: principal.sessionId,
      api_key_id: principal.apiKeyId,
      expires_at: Number.isFinite(this.validUntil) ? new Date(this.validUntil).toISOString() : null,
    };
  }

  /** Asks for a fresh credential ahead of its expiry, and closes the connection at it. */
  private scheduleExpiry(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    if (this.closed || !Number.isFinite(this.validUntil)) return;
    const left = this.validUntil - this.deps.clock.now();
    const later = (ms: number, fn: () => void) => {
      const timer = setTimeout(this.guard('credential timer', fn), Math.max(0, Math.min(ms, MAX_TIMER_MS)));
      timer.unref();
      this.timers.push(timer);
    };
    if (left > MAX_TIMER_MS) {
      later(MAX_TIMER_MS, () => this.scheduleExpiry());
      return;
    }
    const askFresh = () =>
      this.send(
        outMessage('auth', {
          status: 'refresh_required',
          expires_at: new Date(this.validUntil).toISOString(),
          message: 'The credential expires soon: send {"type":"auth","data":{"token":"<fresh access token>"}}',
        }),
      );
    if (left <= REFRESH_LEAD_MS) askFresh();
    else later(left - REFRESH_LEAD_MS, askFresh);
    later(left, () => {
      this.send(errorMessage(new AppError('invalid_token', 'The credential expired before a fresh one was sent')));
      this.close(CLOSE.tokenExpired, 'token_expired');
    });
  }

  /**
   * Resolves the credential again (the user changed: disabled, plan; a key's expiry moved);
   * closes the connection if it was refused. True while it is good. Throws when it could not be
   * checked (see `resolve`): that is no reason to tell the client it was revoked.
   */
  async recheck(): Promise<boolean> {
    if (this.closed) return false;
    let resolved: Awaited<ReturnType<typeof authenticateBearer>>;
    try {
      resolved = await authenticateBearer(this.deps, this.authorization);
    } catch (error) {
      if (!refused(error)) throw error;
      this.close(CLOSE.unauthorized, 'credential_revoked');
      return false;
    }
    if (this.closed || resolved.principal.kind !== 'user') return false;
    this.principal = resolved.principal;
    if (resolved.validUntil !== this.validUntil) {
      this.validUntil = resolved.validUntil;
      this.scheduleExpiry();
    }
    return true;
  }

  /**
   * The periodic re-check (and the one after `user.updated`). A credential that cannot be checked
   * now keeps its connection and is checked again next round: closing every socket of an instance
   * because its database blinked would send all its clients back at once.
   */
  async revalidate(): Promise<void> {
    try {
      await this.recheck();
    } catch (error) {
      this.deps.log.warn({ err: error }, 'realtime: a credential could not be re-checked; trying again next round');
    }
  }

  /** A feed item for this user; events go out once each (a replay may repeat some). */
  deliver(item: FeedItem, replayed = false, text?: string, message?: OutMessage): void {
    if (item.kind === 'event' && this.sentEvents) {
      if (this.sentEvents.has(item.event.id)) return;
      this.sentEvents.add(item.event.id);
    }
    const out = message ?? outMessage('update', item);
    const serialised = text ?? JSON.stringify(out);
    if (this.held && !replayed) this.held.push({ message: out, text: serialised });
    else this.write(out, serialised);
  }

  send(message: OutMessage): void {
    this.write(message, JSON.stringify(message));
  }

  private write(message: OutMessage, text: string): void {
    if (this.closed) return;
    if (this.transport.buffered() > MAX_BUFFERED_BYTES) {
      this.close(CLOSE.slowConsumer, 'slow_consumer');
      return;
    }
    this.transport.send(message, text);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    try {
      this.transport.close(code, reason);
    } finally {
      this.ended();
    }
  }

  /**
   * Something failed inside the server while handling this connection (already logged by the
   * guard that caught it): the client gets a plain `internal_error`, never the cause, and the
   * connection is closed with 1011. Every other connection carries on.
   */
  fail(_error: unknown): void {
    if (this.closed) return;
    try {
      this.send(errorMessage(new AppError('internal_error', 'Something went wrong on the server; reconnect')));
    } finally {
      this.close(CLOSE.internalError, 'internal_error');
    }
  }

  /** `fn` as a listener or timer callback of this connection: what it throws fails this connection only. */
  guard<A extends unknown[]>(what: string, fn: (...args: A) => unknown): (...args: A) => void {
    return guarded(this.deps.log, what, fn, (error) => this.fail(error));
  }

  /** Runs `fn` (usually a promise not awaited) as `guard` describes. */
  run(what: string, fn: () => unknown): void {
    runGuarded(this.deps.log, what, fn, (error) => this.fail(error));
  }

  /** The transport is gone (closed by either side): stop timers and requests, leave the hub. */
  ended(): void {
    if (this.closed && this.gone.signal.aborted) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.gone.abort();
    this.hub.remove(this);
  }
}
