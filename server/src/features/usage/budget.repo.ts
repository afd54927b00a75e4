import { type Kysely, sql } from 'kysely';
import { type Dialect, lockForUpdate } from '../../db/index.js';
import type { Database, TokenBudgetTable, TokenReservationTable } from '../../db/schema.js';
import type { Period } from './periods.js';

export type BudgetRow = TokenBudgetTable;
export type ReservationRow = TokenReservationTable;

export interface BudgetKey {
  tenantId: string;
  userId: string;
  periodStart: number;
}

export async function ensureBudget(
  db: Kysely<Database>,
  tenantId: string,
  userId: string,
  period: Period,
  now: number,
): Promise<void> {
  await db
    .insertInto('token_budgets')
    .values({
      tenant_id: tenantId,
      user_id: userId,
      period_start: period.start,
      period_end: period.end,
      tokens_used: 0,
      tokens_reserved: 0,
      exceeded_at: null,
      updated_at: now,
    })
    .onConflict((oc) => oc.columns(['tenant_id', 'user_id', 'period_start']).doNothing())
    .execute();
}

export function findBudget(db: Kysely<Database>, key: BudgetKey): Promise<BudgetRow | undefined> {
  return db
    .selectFrom('token_budgets')
    .selectAll()
    .where('tenant_id', '=', key.tenantId)
    .where('user_id', '=', key.userId)
    .where('period_start', '=', key.periodStart)
    .executeTakeFirst();
}

/**
 * Adds to the budget's reserved and used tokens. With `limit`, only if used + reserved stays within
 * it: one conditional UPDATE, so concurrent callers on any number of instances are serialised by
 * the row lock and each sees the others' holds (PostgreSQL re-checks the condition on the row it
 * waited for; SQLite runs one write at a time). Returns the row as updated, or undefined when the
 * limit would be passed (or the row does not exist yet).
 */
export async function addToBudget(
  db: Kysely<Database>,
  key: BudgetKey,
  change: { reserved: number; used: number; limit: number | null; now: number },
): Promise<BudgetRow | undefined> {
  let query = db
    .updateTable('token_budgets')
    .set((eb) => ({
      tokens_reserved: eb('tokens_reserved', '+', change.reserved),
      tokens_used: eb('tokens_used', '+', change.used),
      updated_at: change.now,
    }))
    .where('tenant_id', '=', key.tenantId)
    .where('user_id', '=', key.userId)
    .where('period_start', '=', key.periodStart);
  if (change.limit !== null) {
    query = query.where(sql`tokens_used + tokens_reserved + ${change.reserved + change.used}`, '<=', change.limit);
  }
  return query.returningAll().executeTakeFirst();
}

/** Marks the budget as run out for this period; true only for the caller that marked it first. */
export async function markExceeded(db: Kysely<Database>, key: BudgetKey, now: number): Promise<boolean> {
  const result = await db
    .updateTable('token_budgets')
    .set({ exceeded_at: now })
    .where('tenant_id', '=', key.tenantId)
    .where('user_id', '=', key.userId)
    .where('period_start', '=', key.periodStart)
    .where('exceeded_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function insertReservation(db: Kysely<Database>, row: ReservationRow): Promise<void> {
  await db.insertInto('token_reservations').values(row).execute();
}

export function findReservation(db: Kysely<Database>, tenantId: string, id: string) {
  return db
    .selectFrom('token_reservations')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/**
 * Closes a held reservation (settled, released or expired), of `userId` when given. Conditional
 * on it still being held, so of two racing closers exactly one gets the row back and adjusts the
 * budget; expiring is also conditional on the row being past its expiry still (a lease row is
 * renewed: one listed as expired a moment ago may have been renewed since). `charged: 'all'`
 * records every token it held as charged.
 */
export function closeReservation(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  change: { status: 'settled' | 'released' | 'expired'; charged: number | null | 'all'; now: number },
  userId?: string,
) {
  let query = db
    .updateTable('token_reservations')
    .set((eb) => ({
      status: change.status,
      charged: change.charged === 'all' ? eb.ref('tokens') : change.charged,
      closed_at: change.now,
    }))
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('status', '=', 'held');
  if (change.status === 'expired') query = query.where('expires_at', '<=', change.now);
  if (userId !== undefined) query = query.where('user_id', '=', userId);
  return query.returning(['user_id', 'period_start', 'tokens']).executeTakeFirst();
}

/** What an expired lease row was charged when it expired (all it held: ADR 0011); 0 for any other row. */
export async function chargedAtExpiry(db: Kysely<Database>, tenantId: string, id: string): Promise<number> {
  const row = await db
    .selectFrom('token_reservations')
    .select(['status', 'charged'])
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
  return row?.status === 'expired' ? Number(row.charged ?? 0) : 0;
}

/** Charges tokens to a reservation that expired before its call finished (the tokens were really used). */
export async function settleExpired(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  charged: number,
  now: number,
): Promise<boolean> {
  const result = await db
    .updateTable('token_reservations')
    .set({ status: 'settled', charged, closed_at: now })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('status', '=', 'expired')
    .where('charged', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Held reservations past their expiry: of one user, or of everyone (the sweeper), oldest first. */
export function findExpiredHolds(
  db: Kysely<Database>,
  now: number,
  scope: { tenantId: string; userId: string } | { limit: number },
) {
  let query = db
    .selectFrom('token_reservations')
    .select(['id', 'tenant_id'])
    .where('status', '=', 'held')
    .where('expires_at', '<=', now)
    .orderBy('id', 'asc');
  query =
    'userId' in scope
      ? query.where('tenant_id', '=', scope.tenantId).where('user_id', '=', scope.userId)
      : query.limit(scope.limit);
  return query.execute();
}

/** The budget row, locked for the rest of the transaction on PostgreSQL (SQLite runs one writer at a time). */
export function lockBudget(db: Kysely<Database>, dialect: Dialect, key: BudgetKey): Promise<BudgetRow | undefined> {
  const query = db
    .selectFrom('token_budgets')
    .selectAll()
    .where('tenant_id', '=', key.tenantId)
    .where('user_id', '=', key.userId)
    .where('period_start', '=', key.periodStart);
  return lockForUpdate(query, dialect).executeTakeFirst();
}

/**
 * Adds tokens to a held lease row and moves its expiry; false when the row is no longer held or
 * already past its expiry (the sweeper may be freeing its tokens: its owner takes a new row).
 */
export async function stretchLease(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  change: { tokens: number; expiresAt: number; now: number },
): Promise<boolean> {
  const result = await db
    .updateTable('token_reservations')
    .set((eb) => ({ tokens: eb('tokens', '+', change.tokens), expires_at: change.expiresAt }))
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('status', '=', 'held')
    .where('expires_at', '>', change.now)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Takes tokens off a held lease row and moves its expiry, or closes it (`released`). Returns the
 * tokens it still holds, or undefined when it is no longer held (expired meanwhile).
 */
export async function shrinkLease(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  change: { tokens: number; expiresAt: number; close: boolean; now: number },
): Promise<number | undefined> {
  const row = await db
    .updateTable('token_reservations')
    .set((eb) => ({
      tokens: eb('tokens', '-', change.tokens),
      expires_at: change.expiresAt,
      ...(change.close && { status: 'released' as const, closed_at: change.now }),
    }))
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('status', '=', 'held')
    .returning('tokens')
    .executeTakeFirst();
  return row?.tokens;
}
