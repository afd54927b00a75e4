import { type Kysely, sql } from 'kysely';

/**
 * At most one active (unretired) signing key. Instances starting at once on an empty database each
 * created a first key; the unique index makes the first insert win and the others load it
 * (signing-keys.repo.ts). Keys made active by that race before this migration are retired now,
 * all but the newest: they stay published for as long as tokens they signed may live.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const now = Date.now();
  await sql`
    update signing_keys set retired_at = ${now}
    where retired_at is null
      and id <> (select id from signing_keys where retired_at is null order by created_at desc, id desc limit 1)
  `.execute(db);
  // An index on a constant within the partial index: two active rows would share its one value.
  await sql`create unique index signing_keys_one_active on signing_keys ((retired_at is null)) where retired_at is null`.execute(
    db,
  );
}
