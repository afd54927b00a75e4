import type { Kysely } from 'kysely';
import { isUniqueViolation, transaction } from '../../db/index.js';
import type { Database, SigningKeyTable } from '../../db/schema.js';

export type SigningKeyRow = SigningKeyTable;

export function listSigningKeys(db: Kysely<Database>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
}

/**
 * Adds a key and retires every other active key, in one transaction. False when another instance
 * made a key active meanwhile (at most one is: the unique index signing_keys_one_active).
 */
export async function insertActiveSigningKey(db: Kysely<Database>, row: SigningKeyRow): Promise<boolean> {
  try {
    await transaction(db, async (trx) => {
      await trx
        .updateTable('signing_keys')
        .set({ retired_at: row.created_at })
        .where('retired_at', 'is', null)
        .execute();
      await trx.insertInto('signing_keys').values(row).execute();
    });
    return true;
  } catch (error) {
    if (isUniqueViolation(error)) return false;
    throw error;
  }
}

/**
 * Adds the first active key unless there is one: false when another instance's came first, and
 * that one is to be used (instances starting at once on an empty database).
 */
export async function insertFirstSigningKey(db: Kysely<Database>, row: SigningKeyRow): Promise<boolean> {
  try {
    await db.insertInto('signing_keys').values(row).execute();
    return true;
  } catch (error) {
    if (isUniqueViolation(error)) return false;
    throw error;
  }
}
