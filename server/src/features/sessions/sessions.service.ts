import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { ResolvedPrincipal } from '../../auth-cache.js';
import { transaction } from '../../db/index.js';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError, notFound } from '../../errors.js';
import type { Actor, ClientInfo, UserPrincipal } from '../../http/principal.js';
import { REFRESH_TOKEN_PREFIX } from '../../lib/key-prefixes.js';
import { randomToken, sha256 } from '../../lib/tokens.js';
import { recordAudit } from '../audit/audit.service.js';
import { emitEvent } from '../events/events.service.js';
import { limitsOf } from '../plans/plans.service.js';
import { effectiveSettings, requireTenant } from '../tenants/tenants.service.js';
import type { Tenant } from '../tenants/tenants.types.js';
import {
  claimRefreshToken,
  findRefreshToken,
  findSession,
  findSessionForAuth,
  insertRefreshToken,
  insertSession,
  listLiveSessions,
  pruneRefreshTokens,
  revokeSessions,
  touchSession,
} from './sessions.repo.js';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'bearer';
  expires_in: number;
}

interface NewPair {
  pair: TokenPair;
  refreshRow: { id: string; token_hash: string; expires_at: number };
}

async function mintPair(
  deps: Deps,
  tenant: Tenant,
  session: { id: string; userId: string; expiresAt: number },
): Promise<NewPair> {
  const settings = effectiveSettings(deps.config, tenant);
  const now = deps.clock.now();
  const refreshToken = randomToken(REFRESH_TOKEN_PREFIX);
  const accessToken = await deps.keyring.signAccessToken(
    { sub: session.userId, tid: tenant.id, sid: session.id, jti: randomUUID() },
    settings.accessTtlMs,
  );
  return {
    pair: {
      access_token: accessToken,
      refresh_token: refreshToken,
      token_type: 'bearer',
      expires_in: Math.floor(settings.accessTtlMs / 1000),
    },
    refreshRow: {
      id: deps.ids.next('rtk'),
      token_hash: sha256(refreshToken),
      // Idle lifetime, never past the session's absolute end.
      expires_at: Math.min(now + settings.refreshIdleTtlMs, session.expiresAt),
    },
  };
}

/** Opens a session for a user who just proved who they are; writes on the caller's transaction. */
export async function startSession(
  trx: Kysely<Database>,
  deps: Deps,
  input: { tenant: Tenant; userId: string; client: ClientInfo },
): Promise<{ sessionId: string; tokens: TokenPair }> {
  const now = deps.clock.now();
  const settings = effectiveSettings(deps.config, input.tenant);
  const session = { id: deps.ids.next('ses'), userId: input.userId, expiresAt: now + settings.refreshAbsoluteTtlMs };
  const { pair, refreshRow } = await mintPair(deps, input.tenant, session);
  await insertSession(trx, {
    id: session.id,
    tenant_id: input.tenant.id,
    user_id: input.userId,
    ip: input.client.ip,
    user_agent: input.client.userAgent,
    created_at: now,
    last_used_at: now,
    expires_at: session.expiresAt,
    revoked_at: null,
    revoked_reason: null,
  });
  await insertRefreshToken(trx, {
    ...refreshRow,
    tenant_id: input.tenant.id,
    session_id: session.id,
    created_at: now,
    used_at: null,
    successor_sealed: null,
  });
  await emitEvent(trx, deps, {
    tenantId: input.tenant.id,
    type: 'session.created',
    data: { session_id: session.id, user_id: input.userId },
  });
  return { sessionId: session.id, tokens: pair };
}

/** The principal behind an access JWT, or null when the token or its session is no longer good. */
export async function resolveAccessTokenPrincipal(deps: Deps, token: string): Promise<ResolvedPrincipal | null> {
  const claims = await deps.keyring.verifyAccessToken(token);
  if (!claims) return null;
  // Checked on every request (through the auth cache) so logout and revocation take effect at
  // once, not at token expiry.
  const session = await deps.caches.auth.read('session', `${claims.tid}:${claims.sid}`, () =>
    findSessionForAuth(deps.db.kysely, claims.tid, claims.sid),
  );
  if (!session || session.user_id !== claims.sub) return null;
  const now = deps.clock.now();
  if (session.revoked_at !== null || session.expires_at <= now || session.disabled_at !== null) return null;
  return {
    principal: {
      kind: 'user',
      tenantId: claims.tid,
      userId: claims.sub,
      role: session.role,
      sessionId: claims.sid,
      apiKeyId: null,
      limits: await limitsOf(deps, claims.tid, session.plan_id),
    },
    validUntil: Math.min(claims.exp * 1000, session.expires_at),
  };
}

const invalidRefresh = () => new AppError('invalid_refresh_token', 'The refresh token is invalid, expired or revoked');

/**
 * Rotates a refresh token (RFC 9700 §4.14.2). Exactly one exchange of a token wins; a duplicate
 * within the grace window (a client retrying, two tabs racing) gets the very same pair back; a
 * replay after it means the token leaked, so the whole session (the token family) is revoked.
 */
export async function refreshSession(deps: Deps, refreshToken: string, client: ClientInfo): Promise<TokenPair> {
  const db = deps.db.kysely;
  const row = await findRefreshToken(db, sha256(refreshToken));
  const now = deps.clock.now();
  if (!row || row.session_revoked_at !== null || row.user_disabled_at !== null) throw invalidRefresh();
  if (row.expires_at <= now || row.session_expires_at <= now) throw invalidRefresh();
  const aad = `refresh:${row.id}`;

  if (row.used_at === null) {
    const tenant = await requireTenant(deps, row.tenant_id);
    const { pair, refreshRow } = await mintPair(deps, tenant, {
      id: row.session_id,
      userId: row.user_id,
      expiresAt: row.session_expires_at,
    });
    const sealed = deps.masterKey.seal(JSON.stringify(pair), aad);
    const won = await transaction(db, async (trx) => {
      if (!(await claimRefreshToken(trx, row.id, now, sealed))) return false;
      await insertRefreshToken(trx, {
        ...refreshRow,
        tenant_id: row.tenant_id,
        session_id: row.session_id,
        created_at: now,
        used_at: null,
        successor_sealed: null,
      });
      await touchSession(trx, row.session_id, { lastUsedAt: now, ip: client.ip, userAgent: client.userAgent });
      await recordAudit(trx, deps, {
        tenantId: row.tenant_id,
        action: 'token.refreshed',
        actor: { type: 'user', id: row.user_id },
        target: { type: 'session', id: row.session_id },
        client,
      });
      return true;
    });
    if (won) return pair;
  }

  // Someone exchanged this token already: a racing duplicate or a replay.
  const current = await findRefreshToken(db, sha256(refreshToken));
  if (
    current?.used_at != null &&
    current.successor_sealed &&
    now - current.used_at <= deps.config.tokens.refreshGraceMs
  ) {
    if (current.session_revoked_at !== null) throw invalidRefresh();
    return JSON.parse(deps.masterKey.open(current.successor_sealed, aad).toString('utf8')) as TokenPair;
  }
  await transaction(db, async (trx) => {
    const revoked = await revokeSessions(trx, row.tenant_id, { sessionId: row.session_id }, now, 'refresh_token_reuse');
    if (revoked.length > 0) {
      await emitEvent(trx, deps, {
        tenantId: row.tenant_id,
        type: 'session.revoked',
        data: { session_id: row.session_id, user_id: row.user_id, reason: 'refresh_token_reuse' },
      });
    }
    await recordAudit(trx, deps, {
      tenantId: row.tenant_id,
      action: 'refresh_token.reuse_detected',
      actor: { type: 'user', id: row.user_id },
      target: { type: 'session', id: row.session_id },
      client,
    });
  });
  deps.log.warn(
    { sessionId: row.session_id, tenantId: row.tenant_id },
    'refresh token reuse detected; session revoked',
  );
  deps.caches.auth.clear();
  throw invalidRefresh();
}

export async function listSessions(deps: Deps, principal: UserPrincipal) {
  const tenant = await requireTenant(deps, principal.tenantId);
  const idle = effectiveSettings(deps.config, tenant).refreshIdleTtlMs;
  const now = deps.clock.now();
  const rows = await listLiveSessions(deps.db.kysely, principal.tenantId, principal.userId, now);
  return rows
    .filter((row) => row.last_used_at + idle > now)
    .map((row) => ({
      id: row.id,
      ip: row.ip,
      user_agent: row.user_agent,
      created_at: new Date(row.created_at).toISOString(),
      last_used_at: new Date(row.last_used_at).toISOString(),
      expires_at: new Date(Math.min(row.expires_at, row.last_used_at + idle)).toISOString(),
      current: row.id === principal.sessionId,
    }));
}

export async function revokeSession(
  deps: Deps,
  principal: UserPrincipal,
  sessionId: string,
  client: ClientInfo,
  action: 'session.revoked' | 'logout' = 'session.revoked',
): Promise<void> {
  const session = await findSession(deps.db.kysely, principal.tenantId, sessionId);
  if (!session || session.user_id !== principal.userId) throw notFound('Session');
  await transaction(deps.db.kysely, async (trx) => {
    const revoked = await revokeSessions(trx, principal.tenantId, { sessionId }, deps.clock.now(), action);
    if (revoked.length === 0) return;
    await emitEvent(trx, deps, {
      tenantId: principal.tenantId,
      type: 'session.revoked',
      data: { session_id: sessionId, user_id: principal.userId, reason: action },
    });
    await recordAudit(trx, deps, {
      tenantId: principal.tenantId,
      action,
      actor: { type: 'user', id: principal.userId },
      target: { type: 'session', id: sessionId },
      client,
    });
  });
  deps.caches.auth.clear();
}

/** Logs out the calling session, or the session of the given refresh token (API-key callers). */
export async function logout(
  deps: Deps,
  principal: UserPrincipal,
  refreshToken: string | undefined,
  client: ClientInfo,
) {
  let sessionId = principal.sessionId;
  if (!sessionId && refreshToken) {
    const row = await findRefreshToken(deps.db.kysely, sha256(refreshToken));
    if (row && row.tenant_id === principal.tenantId && row.user_id === principal.userId) sessionId = row.session_id;
  }
  if (!sessionId) {
    throw new AppError('invalid_request', 'No session to log out: call with an access token, or send {refresh_token}');
  }
  await revokeSession(deps, principal, sessionId, client, 'logout');
}

/** Revokes every session of a user (optionally all but one). The caller clears the auth cache after its commit. */
export async function revokeUserSessions(
  trx: Kysely<Database>,
  deps: Deps,
  input: {
    tenantId: string;
    userId: string;
    exceptSessionId?: string;
    actor: Actor;
    client: ClientInfo;
    reason: 'logout.all' | 'password.changed' | 'user.disabled';
  },
): Promise<number> {
  const revoked = await revokeSessions(
    trx,
    input.tenantId,
    { userId: input.userId, exceptSessionId: input.exceptSessionId },
    deps.clock.now(),
    input.reason,
  );
  for (const sessionId of revoked) {
    await emitEvent(trx, deps, {
      tenantId: input.tenantId,
      type: 'session.revoked',
      data: { session_id: sessionId, user_id: input.userId, reason: input.reason },
    });
  }
  if (input.reason === 'logout.all') {
    await recordAudit(trx, deps, {
      tenantId: input.tenantId,
      action: 'logout.all',
      actor: input.actor,
      target: { type: 'user', id: input.userId },
      client: input.client,
      data: { sessions: revoked.length },
    });
  }
  return revoked.length;
}

export async function logoutAll(deps: Deps, principal: UserPrincipal, client: ClientInfo): Promise<number> {
  const count = await transaction(deps.db.kysely, (trx) =>
    revokeUserSessions(trx, deps, {
      tenantId: principal.tenantId,
      userId: principal.userId,
      actor: { type: 'user', id: principal.userId },
      client,
      reason: 'logout.all',
    }),
  );
  deps.caches.auth.clear();
  return count;
}

export function pruneSessions(deps: Deps): Promise<void> {
  const now = deps.clock.now();
  return pruneRefreshTokens(deps.db.kysely, now - deps.config.tokens.refreshGraceMs, now - 86_400_000);
}
