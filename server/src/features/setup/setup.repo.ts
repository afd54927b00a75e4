import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';

export async function readState(db: Kysely<Database>, key: string): Promise<string | null> {
  const row = await db.selectFrom('instance_state').select('value').where('key', '=', key).executeTakeFirst();
  return row?.value ?? null;
}

export async function writeState(db: Kysely<Database>, key: string, value: string, now: number): Promise<void> {
  await db
    .insertInto('instance_state')
    .values({ key, value, updated_at: now })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value, updated_at: now }))
    .execute();
}

/** Deletes the entry only if it still holds `value`; true when this call deleted it. */
export async function takeState(db: Kysely<Database>, key: string, value: string): Promise<boolean> {
  const result = await db
    .deleteFrom('instance_state')
    .where('key', '=', key)
    .where('value', '=', value)
    .executeTakeFirst();
  return Number(result.numDeletedRows) === 1;
}
