import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../db/index.js';
import type { Database, LlmPriceTable, LlmRouteTable, LlmSettingsTable } from '../../db/schema.js';
import { AppError } from '../../errors.js';

export type RouteRow = LlmRouteTable;
export type PriceRow = LlmPriceTable;
export type SettingsRow = LlmSettingsTable;

const routeTaken = (model: string | undefined) =>
  new AppError('conflict', `A route for the model "${model}" already exists; change it instead`);

export async function insertRoute(db: Kysely<Database>, row: RouteRow): Promise<void> {
  try {
    await db.insertInto('llm_routes').values(row).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw routeTaken(row.model);
    throw error;
  }
}

export async function updateRouteRow(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  changes: Partial<RouteRow>,
): Promise<void> {
  try {
    await db.updateTable('llm_routes').set(changes).where('tenant_id', '=', tenantId).where('id', '=', id).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw routeTaken(changes.model);
    throw error;
  }
}

export function listRouteRows(db: Kysely<Database>, tenantId: string): Promise<RouteRow[]> {
  return db.selectFrom('llm_routes').selectAll().where('tenant_id', '=', tenantId).orderBy('model', 'asc').execute();
}

export function findRoute(db: Kysely<Database>, tenantId: string, id: string) {
  return db
    .selectFrom('llm_routes')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function deleteRouteRow(db: Kysely<Database>, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom('llm_routes').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
}

export function listPriceRows(db: Kysely<Database>, tenantId: string): Promise<PriceRow[]> {
  return db.selectFrom('llm_prices').selectAll().where('tenant_id', '=', tenantId).orderBy('model', 'asc').execute();
}

export async function upsertPrice(db: Kysely<Database>, row: PriceRow): Promise<void> {
  await db
    .insertInto('llm_prices')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['tenant_id', 'model']).doUpdateSet({
        input_micros: row.input_micros,
        output_micros: row.output_micros,
        updated_at: row.updated_at,
      }),
    )
    .execute();
}

/** Whether a price was there to delete. */
export async function deletePriceRow(db: Kysely<Database>, tenantId: string, model: string): Promise<boolean> {
  const result = await db
    .deleteFrom('llm_prices')
    .where('tenant_id', '=', tenantId)
    .where('model', '=', model)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export function findSettings(db: Kysely<Database>, tenantId: string) {
  return db.selectFrom('llm_settings').selectAll().where('tenant_id', '=', tenantId).executeTakeFirst();
}

export async function upsertSettings(db: Kysely<Database>, row: SettingsRow): Promise<void> {
  const { tenant_id: _, ...changes } = row;
  await db
    .insertInto('llm_settings')
    .values(row)
    .onConflict((oc) => oc.column('tenant_id').doUpdateSet(changes))
    .execute();
}
