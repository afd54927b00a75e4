import type { Kysely } from 'kysely';

// Vault connect links bound to the browser that opened them (docs/adr/0017): the provider's
// authorization URL is kept (sealed) behind Gatehouse's own link page, and the hash of the browser
// secret that opened it is recorded, for the callback to require. Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('oauth_states').addColumn('authorize_url_sealed', 'text').execute();
  await db.schema.alterTable('oauth_states').addColumn('browser_binding', 'text').execute();
}
