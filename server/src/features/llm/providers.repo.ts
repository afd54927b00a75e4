import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../db/index.js';
import type { Database, LlmProviderTable } from '../../db/schema.js';
import { AppError } from '../../errors.js';

export type ProviderRow = LlmProviderTable;

const nameTaken = (name: string | undefined) =>
  new AppError('conflict', `An LLM provider named "${name}" already exists`);

export async function insertProvider(db: Kysely<Database>, row: ProviderRow): Promise<void> {
  try {
    await db.insertInto('llm_providers').values(row).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(row.name);
    throw error;
  }
}

export function listProviderRows(db: Kysely<Database>, tenantId: string): Promise<ProviderRow[]> {
  return db.selectFrom('llm_providers').selectAll().where('tenant_id', '=', tenantId).orderBy('id', 'asc').execute();
}

export function findProvider(db: Kysely<Database>, tenantId: string, id: string) {
  return db
    .selectFrom('llm_providers')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function updateProviderRow(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  changes: Partial<ProviderRow>,
): Promise<void> {
  try {
    await db.updateTable('llm_providers').set(changes).where('tenant_id', '=', tenantId).where('id', '=', id).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(changes.name);
    throw error;
  }
}

export async function deleteProviderRow(db: Kysely<Database>, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom('llm_providers').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
}
