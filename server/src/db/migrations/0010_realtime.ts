import type { Kysely } from 'kysely';

// Realtime (issue 6): events name the user they concern, so a user's feed can be replayed from
// the outbox after a reconnect. Older events keep user_id null (they predate any feed). Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('events').addColumn('user_id', 'text').execute();
  await db.schema.createIndex('events_user_feed').on('events').columns(['tenant_id', 'user_id', 'id']).execute();
}
