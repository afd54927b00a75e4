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

export async function deleteState(db: Kysely<Database>, key: string): Promise<void> {
  await db.deleteFrom('instance_state').where('key', '=', key).execute();
}
