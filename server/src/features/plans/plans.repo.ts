import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../db/index.js';
import type { Database, PlanTable } from '../../db/schema.js';
import { AppError } from '../../errors.js';

export type PlanRow = PlanTable;

export async function insertPlan(db: Kysely<Database>, row: PlanRow): Promise<void> {
  try {
    await db.insertInto('plans').values(row).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw new AppError('conflict', `A plan named "${row.name}" already exists`);
    throw error;
  }
}

export function listPlanRows(db: Kysely<Database>, tenantId: string): Promise<PlanRow[]> {
  return db.selectFrom('plans').selectAll().where('tenant_id', '=', tenantId).orderBy('id', 'asc').execute();
}

/** A plan of the tenant by id or by name. */
export function findPlan(db: Kysely<Database>, tenantId: string, idOrName: string): Promise<PlanRow | undefined> {
  return db
    .selectFrom('plans')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
    .executeTakeFirst();
}

export async function updatePlanRow(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  changes: Partial<Omit<PlanRow, 'id' | 'tenant_id' | 'created_at'>>,
): Promise<void> {
  try {
    await db.updateTable('plans').set(changes).where('tenant_id', '=', tenantId).where('id', '=', id).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw new AppError('conflict', `A plan named "${changes.name}" already exists`);
    throw error;
  }
}

export async function deletePlanRow(db: Kysely<Database>, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom('plans').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
}

export async function countUsersOnPlan(db: Kysely<Database>, tenantId: string, planId: string): Promise<number> {
  const row = await db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('tenant_id', '=', tenantId)
    .where('plan_id', '=', planId)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

export async function setUserPlan(
  db: Kysely<Database>,
  tenantId: string,
  userId: string,
  planId: string | null,
  now: number,
) {
  await db
    .updateTable('users')
    .set({ plan_id: planId, updated_at: now })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', userId)
    .execute();
}
