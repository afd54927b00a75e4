import type { Kysely } from 'kysely';
import type { Database, ServiceKeyTable } from '../../db/schema.js';

export type ServiceKeyRow = ServiceKeyTable;

export async function insertServiceKey(db: Kysely<Database>, row: ServiceKeyRow): Promise<void> {
  await db.insertInto('service_keys').values(row).execute();
}

export function findServiceKeyByHash(db: Kysely<Database>, keyHash: string) {
  return db.selectFrom('service_keys').selectAll().where('key_hash', '=', keyHash).executeTakeFirst();
}

export function listServiceKeys(db: Kysely<Database>, tenantId: string) {
  return db
    .selectFrom('service_keys')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('revoked_at', 'is', null)
    .orderBy('id', 'asc')
    .execute();
}

/** Revokes a live key of the tenant; false when there is none. */
export async function revokeServiceKey(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  at: number,
): Promise<boolean> {
  const result = await db
    .updateTable('service_keys')
    .set({ revoked_at: at })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
