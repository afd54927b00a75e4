import type { Kysely } from 'kysely';
import type { ApiKeyTable, Database } from '../../db/schema.js';

export type ApiKeyRow = ApiKeyTable;

export async function insertApiKey(db: Kysely<Database>, row: ApiKeyRow): Promise<void> {
  await db.insertInto('api_keys').values(row).execute();
}

/** A key by its hash, with its owner's state; any tenant (the caller checks the tenant). */
export function findApiKeyByHash(db: Kysely<Database>, keyHash: string) {
  return db
    .selectFrom('api_keys')
    .innerJoin('users', 'users.id', 'api_keys.user_id')
    .selectAll('api_keys')
    .select(['users.role', 'users.disabled_at as user_disabled_at', 'users.plan_id as user_plan_id'])
    .where('api_keys.key_hash', '=', keyHash)
    .executeTakeFirst();
}

export function findApiKey(db: Kysely<Database>, tenantId: string, userId: string, id: string) {
  return db
    .selectFrom('api_keys')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export function listApiKeys(db: Kysely<Database>, tenantId: string, userId: string) {
  return db
    .selectFrom('api_keys')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .orderBy('id', 'asc')
    .execute();
}

export async function revokeApiKeyRow(db: Kysely<Database>, tenantId: string, id: string, at: number): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ revoked_at: at })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .execute();
}

/** Points a key at its successor and shortens its life to the overlap, unless it was rotated already. */
export async function markRotated(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  change: { expiresAt: number; successorId: string },
): Promise<boolean> {
  const result = await db
    .updateTable('api_keys')
    .set({ expires_at: change.expiresAt, rotated_to: change.successorId })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('rotated_to', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Keys of a user that still authenticate (not revoked, not expired), a rotated one in its overlap included. */
export async function countLiveApiKeys(db: Kysely<Database>, tenantId: string, userId: string, now: number) {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirstOrThrow();
  return Number(row.count);
}
