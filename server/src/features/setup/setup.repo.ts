import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';

// Setup tokens live in instance_state, one row per token: `setup_token:<sha256>` → {expires_at}.
const PREFIX = 'setup_token:';
// Keys of this prefix exactly (`;` is the character after `:`), without LIKE's wildcards.
const AFTER_PREFIX = 'setup_token;';

export interface SetupTokenRow {
  hash: string;
  expiresAt: number;
}

const parse = (key: string, value: string): SetupTokenRow => ({
  hash: key.slice(PREFIX.length),
  expiresAt: Number((JSON.parse(value) as { expires_at?: number }).expires_at ?? 0),
});

export async function insertSetupToken(db: Kysely<Database>, row: SetupTokenRow, now: number): Promise<void> {
  await db
    .insertInto('instance_state')
    .values({ key: `${PREFIX}${row.hash}`, value: JSON.stringify({ expires_at: row.expiresAt }), updated_at: now })
    .execute();
}

export async function findSetupToken(db: Kysely<Database>, hash: string): Promise<SetupTokenRow | null> {
  const row = await db
    .selectFrom('instance_state')
    .select(['key', 'value'])
    .where('key', '=', `${PREFIX}${hash}`)
    .executeTakeFirst();
  return row ? parse(row.key, row.value) : null;
}

export async function listSetupTokens(db: Kysely<Database>): Promise<SetupTokenRow[]> {
  const rows = await db
    .selectFrom('instance_state')
    .select(['key', 'value'])
    .where('key', '>=', PREFIX)
    .where('key', '<', AFTER_PREFIX)
    .execute();
  return rows.map((row) => parse(row.key, row.value));
}

/** Deletes these tokens, and the single `setup_token` row of versions that kept one token. */
export async function deleteSetupTokens(db: Kysely<Database>, hashes: string[]): Promise<void> {
  const keys = ['setup_token', ...hashes.map((hash) => `${PREFIX}${hash}`)];
  await db.deleteFrom('instance_state').where('key', 'in', keys).execute();
}

/**
 * Deletes every setup token and returns them. In a transaction on PostgreSQL, a concurrent call
 * waits on the rows this one deleted and then finds them gone: one caller takes the tokens.
 */
export async function takeAllSetupTokens(db: Kysely<Database>): Promise<SetupTokenRow[]> {
  const rows = await db
    .deleteFrom('instance_state')
    .where('key', '>=', PREFIX)
    .where('key', '<', AFTER_PREFIX)
    .returning(['key', 'value'])
    .execute();
  return rows.map((row) => parse(row.key, row.value));
}
