import type { Kysely } from 'kysely';
import { transaction } from '../../db/index.js';
import type { Database, SigningKeyTable } from '../../db/schema.js';

export type SigningKeyRow = SigningKeyTable;

export function listSigningKeys(db: Kysely<Database>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'asc').orderBy('id', 'asc').execute();
}

/** Adds a key and retires every other active key, in one transaction. */
export async function insertActiveSigningKey(db: Kysely<Database>, row: SigningKeyRow): Promise<void> {
  await transaction(db, async (trx) => {
    await trx.updateTable('signing_keys').set({ retired_at: row.created_at }).where('retired_at', 'is', null).execute();
    await trx.insertInto('signing_keys').values(row).execute();
  });
}
