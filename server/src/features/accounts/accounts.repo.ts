import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../db/index.js';
import type { Database, UserTable } from '../../db/schema.js';
import { AppError } from '../../errors.js';

export type UserRow = UserTable;

export async function insertUser(db: Kysely<Database>, row: UserRow): Promise<void> {
  try {
    await db.insertInto('users').values(row).execute();
  } catch (error) {
    if (isUniqueViolation(error)) throw new AppError('email_taken', 'An account with this email already exists');
    throw error;
  }
}

export function findUserByEmail(db: Kysely<Database>, tenantId: string, email: string): Promise<UserRow | undefined> {
  return db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('email', '=', email)
    .executeTakeFirst();
}

export function findUser(db: Kysely<Database>, tenantId: string, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
}

export async function updateUser(
  db: Kysely<Database>,
  tenantId: string,
  id: string,
  changes: Partial<Pick<UserRow, 'name' | 'password_hash' | 'role' | 'disabled_at' | 'last_login_at' | 'updated_at'>>,
): Promise<void> {
  await db.updateTable('users').set(changes).where('tenant_id', '=', tenantId).where('id', '=', id).execute();
}

export function listUsers(
  db: Kysely<Database>,
  tenantId: string,
  filter: { after?: string; limit: number; email?: string },
) {
  let query = db
    .selectFrom('users')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('id', 'asc')
    .limit(filter.limit);
  if (filter.after) query = query.where('id', '>', filter.after);
  if (filter.email) query = query.where('email', '=', filter.email);
  return query.execute();
}

export async function operatorExists(db: Kysely<Database>): Promise<boolean> {
  const row = await db.selectFrom('users').select('id').where('role', '=', 'operator').limit(1).executeTakeFirst();
  return row !== undefined;
}
