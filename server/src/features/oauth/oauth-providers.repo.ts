import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../db/index.js';
import type { Database, OAuthProviderTable } from '../../db/schema.js';
import { AppError } from '../../errors.js';

export type OAuthProviderRow = OAuthProviderTable;

const nameTaken = (name: string | undefined) =>
  new AppError('conflict', `An OAuth provider named "${name}" already exists`);

export async function insertOAuthProvider(db: Kysely<Database>, row: OAuthProviderRow): Promise<void> {
  try {
    await db.insertInto('oauth_providers').values(row).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(row.name);
    throw error;
  }
}

export async function updateOAuthProviderRow(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  changes: Partial<OAuthProviderRow>,
): Promise<void> {
  try {
    await db
      .updateTable('oauth_providers')
      .set(changes)
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(changes.name);
    throw error;
  }
}

export function listOAuthProviderRows(db: Kysely<Database>, tenantId: string) {
  return db
    .selectFrom('oauth_providers')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('name', 'asc')
    .execute();
}

/** By id or by name (the vault's service name). */
export function findOAuthProvider(db: Kysely<Database>, tenantId: string, idOrName: string) {
  return db
    .selectFrom('oauth_providers')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
    .executeTakeFirst();
}

export function findOAuthProviderById(db: Kysely<Database>, id: string) {
  return db.selectFrom('oauth_providers').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function deleteOAuthProviderRow(db: Kysely<Database>, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom('oauth_providers').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
}
