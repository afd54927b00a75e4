import type { Kysely } from 'kysely';
import type { Database, RefreshTokenTable, SessionTable } from '../../db/schema.js';

export type SessionRow = SessionTable;

export async function insertSession(db: Kysely<Database>, row: SessionRow): Promise<void> {
  await db.insertInto('sessions').values(row).execute();
}

export async function insertRefreshToken(db: Kysely<Database>, row: RefreshTokenTable): Promise<void> {
  await db.insertInto('refresh_tokens').values(row).execute();
}

/** The session behind an access token, with what authorisation needs from its user. */
export function findSessionForAuth(db: Kysely<Database>, tenantId: string, sessionId: string) {
  return db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'sessions.user_id',
      'sessions.revoked_at',
      'sessions.expires_at',
      'users.role',
      'users.disabled_at',
      'users.plan_id',
    ])
    .where('sessions.id', '=', sessionId)
    .where('sessions.tenant_id', '=', tenantId)
    .executeTakeFirst();
}

export function findRefreshToken(db: Kysely<Database>, tokenHash: string) {
  return db
    .selectFrom('refresh_tokens')
    .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'refresh_tokens.id',
      'refresh_tokens.tenant_id',
      'refresh_tokens.session_id',
      'refresh_tokens.expires_at',
      'refresh_tokens.used_at',
      'refresh_tokens.successor_sealed',
      'sessions.user_id',
      'sessions.expires_at as session_expires_at',
      'sessions.revoked_at as session_revoked_at',
      'users.disabled_at as user_disabled_at',
    ])
    .where('refresh_tokens.token_hash', '=', tokenHash)
    .executeTakeFirst();
}

/**
 * Marks a refresh token as exchanged, only if nobody did first: the WHERE makes concurrent
 * exchanges of one token race on a row lock, and exactly one of them wins.
 */
export async function claimRefreshToken(
  db: Kysely<Database>,
  id: string,
  usedAt: number,
  successorSealed: string,
): Promise<boolean> {
  const result = await db
    .updateTable('refresh_tokens')
    .set({ used_at: usedAt, successor_sealed: successorSealed })
    .where('id', '=', id)
    .where('used_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function touchSession(
  db: Kysely<Database>,
  sessionId: string,
  changes: { lastUsedAt: number; ip: string | null; userAgent: string | null },
): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ last_used_at: changes.lastUsedAt, ip: changes.ip, user_agent: changes.userAgent })
    .where('id', '=', sessionId)
    .execute();
}

export function findSession(db: Kysely<Database>, tenantId: string, sessionId: string) {
  return db
    .selectFrom('sessions')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', sessionId)
    .executeTakeFirst();
}

/** Revokes live sessions matching the filter; returns the ids it revoked. */
export async function revokeSessions(
  db: Kysely<Database>,
  tenantId: string,
  filter: { sessionId?: string; userId?: string; exceptSessionId?: string },
  revokedAt: number,
  reason: string,
): Promise<string[]> {
  let query = db
    .updateTable('sessions')
    .set({ revoked_at: revokedAt, revoked_reason: reason })
    .where('tenant_id', '=', tenantId)
    .where('revoked_at', 'is', null);
  if (filter.sessionId) query = query.where('id', '=', filter.sessionId);
  if (filter.userId) query = query.where('user_id', '=', filter.userId);
  if (filter.exceptSessionId) query = query.where('id', '!=', filter.exceptSessionId);
  const rows = await query.returning('id').execute();
  return rows.map((r) => r.id);
}

export function listLiveSessions(db: Kysely<Database>, tenantId: string, userId: string, now: number) {
  return db
    .selectFrom('sessions')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .orderBy('id', 'desc')
    .execute();
}

/** Housekeeping: forget sealed successor pairs past the grace window and long-expired tokens. */
export async function pruneRefreshTokens(
  db: Kysely<Database>,
  usedBefore: number,
  expiredBefore: number,
): Promise<void> {
  await db
    .updateTable('refresh_tokens')
    .set({ successor_sealed: null })
    .where('used_at', '<', usedBefore)
    .where('successor_sealed', 'is not', null)
    .execute();
  await db.deleteFrom('refresh_tokens').where('expires_at', '<', expiredBefore).execute();
}
