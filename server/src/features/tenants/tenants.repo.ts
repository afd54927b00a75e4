import type { Kysely } from 'kysely';
import { type Dialect, isUniqueViolation, json, lockForUpdate } from '../../db/index.js';
import type { Database, TenantTable } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import type { Tenant, TenantSettings } from './tenants.types.js';

function toTenant(row: TenantTable): Tenant {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    publishableKey: row.publishable_key,
    settings: json.read<TenantSettings>(row.settings, {}),
    defaultPlanId: row.default_plan_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export async function insertTenant(db: Kysely<Database>, tenant: Tenant): Promise<Tenant> {
  try {
    await db
      .insertInto('tenants')
      .values({
        id: tenant.id,
        slug: tenant.slug,
        name: tenant.name,
        publishable_key: tenant.publishableKey,
        settings: json.write(tenant.settings),
        default_plan_id: tenant.defaultPlanId,
        created_at: tenant.createdAt,
        updated_at: tenant.updatedAt,
      })
      .execute();
    return tenant;
  } catch (error) {
    if (isUniqueViolation(error)) throw new AppError('conflict', `A tenant with slug "${tenant.slug}" already exists`);
    throw error;
  }
}

export async function findTenant(
  db: Kysely<Database>,
  by: { id: string } | { slug: string } | { publishableKey: string },
  options: { lock?: Dialect } = {},
): Promise<Tenant | null> {
  let query = db.selectFrom('tenants').selectAll();
  if (options.lock) query = lockForUpdate(query, options.lock);
  if ('id' in by) query = query.where('id', '=', by.id);
  else if ('slug' in by) query = query.where('slug', '=', by.slug);
  else query = query.where('publishable_key', '=', by.publishableKey);
  const row = await query.executeTakeFirst();
  return row ? toTenant(row) : null;
}

export async function listTenants(db: Kysely<Database>, page: { after?: string; limit: number }): Promise<Tenant[]> {
  let query = db.selectFrom('tenants').selectAll().orderBy('id', 'asc').limit(page.limit);
  if (page.after) query = query.where('id', '>', page.after);
  return (await query.execute()).map(toTenant);
}

export async function updateTenant(
  db: Kysely<Database>,
  id: string,
  changes: { name?: string; settings?: TenantSettings; defaultPlanId?: string; updatedAt: number },
): Promise<void> {
  await db
    .updateTable('tenants')
    .set({
      ...(changes.name !== undefined && { name: changes.name }),
      ...(changes.settings !== undefined && { settings: json.write(changes.settings) }),
      ...(changes.defaultPlanId !== undefined && { default_plan_id: changes.defaultPlanId }),
      updated_at: changes.updatedAt,
    })
    .where('id', '=', id)
    .execute();
}

export async function listAllTenants(db: Kysely<Database>): Promise<Tenant[]> {
  return (await db.selectFrom('tenants').selectAll().execute()).map(toTenant);
}
