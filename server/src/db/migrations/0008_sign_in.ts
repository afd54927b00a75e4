import type { Kysely } from 'kysely';

// Social sign-in (issue 5): external identities of users, and the one-time codes an app exchanges
// for tokens. Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  // A user is found by the provider's subject, never by email alone.
  await db.schema
    .createTable('user_identities')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
    .addColumn('provider_id', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('email', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_login_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('user_identities_subject')
    .on('user_identities')
    .columns(['tenant_id', 'provider_id', 'subject'])
    .unique()
    .execute();

  // What the app gets back in its redirect: single use, a minute, bound to its redirect URI (and PKCE).
  await db.schema
    .createTable('oauth_codes')
    /** SHA-256 of the code. */
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('redirect_uri', 'text', (c) => c.notNull())
    .addColumn('code_challenge', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .execute();

  // The app's own state and PKCE challenge, carried through the provider round trip.
  await db.schema.alterTable('oauth_states').addColumn('app_state', 'text').execute();
  await db.schema.alterTable('oauth_states').addColumn('app_code_challenge', 'text').execute();
}
