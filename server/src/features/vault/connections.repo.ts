import type { Kysely } from 'kysely';
import type { ConnectionTable, Database } from '../../db/schema.js';

export type ConnectionRow = ConnectionTable;

export function findConnection(db: Kysely<Database>, tenantId: string, owner: string, service: string) {
  return db
    .selectFrom('connections')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('owner', '=', owner)
    .where('service', '=', service)
    .executeTakeFirst();
}

/** Inserts the connection, or replaces the auth data of the one already there; returns the row as stored. */
export async function upsertConnection(db: Kysely<Database>, row: ConnectionRow): Promise<ConnectionRow> {
  return db
    .insertInto('connections')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['tenant_id', 'owner', 'service']).doUpdateSet({
        auth_data_sealed: row.auth_data_sealed,
        key_version: row.key_version,
        expires_at: row.expires_at,
        updated_at: row.updated_at,
        provider_id: row.provider_id,
        status: row.status,
        refresh_failures: 0,
        next_refresh_at: null,
        last_error: null,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Newest first by id; `owner` narrows to one user's. */
export function listConnectionRows(
  db: Kysely<Database>,
  tenantId: string,
  filter: { owner?: string; after?: string; limit: number },
) {
  let query = db
    .selectFrom('connections')
    .select([
      'id',
      'owner',
      'user_id',
      'service',
      'key_version',
      'expires_at',
      'created_at',
      'updated_at',
      'status',
      'provider_id',
    ])
    .where('tenant_id', '=', tenantId)
    .orderBy('id', 'desc')
    .limit(filter.limit + 1);
  if (filter.owner !== undefined) query = query.where('owner', '=', filter.owner);
  if (filter.after !== undefined) query = query.where('id', '<', filter.after);
  return query.execute();
}

export async function deleteConnectionRow(db: Kysely<Database>, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom('connections').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
}

/** Ids of connections sealed under an older key than `version`, a batch at a time after `after` (rotate-vault). */
export function connectionsBelowVersion(
  db: Kysely<Database>,
  tenantId: string,
  version: number,
  limit: number,
  after?: string,
) {
  let query = db
    .selectFrom('connections')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('key_version', '<', version)
    .orderBy('id', 'asc')
    .limit(limit);
  if (after !== undefined) query = query.where('id', '>', after);
  return query.execute();
}

export function countBelowVersion(db: Kysely<Database>, version: number | null) {
  let query = db.selectFrom('connections').select((eb) => eb.fn.countAll<number>().as('n'));
  if (version !== null) query = query.where('key_version', '<', version);
  return query.executeTakeFirstOrThrow().then((row) => Number(row.n));
}

/**
 * Replaces one connection's ciphertext with its re-encryption, only if it has not changed since it
 * was read (a write meanwhile already sealed it under the newest key); true when replaced.
 */
export async function reseal(
  db: Kysely<Database>,
  row: { id: string; key_version: number; updated_at: number },
  sealed: string,
  version: number,
): Promise<boolean> {
  const result = await db
    .updateTable('connections')
    .set({ auth_data_sealed: sealed, key_version: version })
    .where('id', '=', row.id)
    .where('key_version', '=', row.key_version)
    .where('updated_at', '=', row.updated_at)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
