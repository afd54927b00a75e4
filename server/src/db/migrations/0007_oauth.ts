import type { Kysely } from 'kysely';

// OAuth providers, authorization states and refreshable vault connections (issue 5). Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('oauth_providers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    /** Also the vault service name its connections are saved under. */
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('preset', 'text')
    .addColumn('client_id', 'text', (c) => c.notNull())
    /** AES-256-GCM under the master key; null for a public client (PKCE only). */
    .addColumn('client_secret_sealed', 'text')
    .addColumn('issuer', 'text')
    .addColumn('authorization_endpoint', 'text', (c) => c.notNull())
    .addColumn('token_endpoint', 'text', (c) => c.notNull())
    .addColumn('revocation_endpoint', 'text')
    .addColumn('userinfo_endpoint', 'text')
    /** JSON array of scopes asked for by default. */
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('pkce', 'integer', (c) => c.notNull())
    /** JSON object of extra authorization parameters (access_type=offline…). */
    .addColumn('extra_params', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('oauth_providers_tenant_name')
    .on('oauth_providers')
    .columns(['tenant_id', 'name'])
    .unique()
    .execute();

  // One row per authorization started: single use, short-lived, naming whose connection it makes.
  await db.schema
    .createTable('oauth_states')
    /** SHA-256 of the state sent to the provider (the state itself is never stored). */
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('provider_id', 'text', (c) => c.notNull())
    .addColumn('purpose', 'text', (c) => c.notNull())
    .addColumn('owner', 'text')
    .addColumn('user_id', 'text')
    .addColumn('code_verifier_sealed', 'text', (c) => c.notNull())
    .addColumn('redirect_after', 'text')
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .execute();

  // OAuth connections: which provider refreshes them, their state, and the refresh in flight.
  await db.schema.alterTable('connections').addColumn('provider_id', 'text').execute();
  await db.schema
    .alterTable('connections')
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('active'))
    .execute();
  /** Set by the instance refreshing it, until when (others wait for its result meanwhile). */
  await db.schema.alterTable('connections').addColumn('refresh_lock_until', 'bigint').execute();
  await db.schema
    .alterTable('connections')
    .addColumn('refresh_failures', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  /** After a failed refresh: not before (backoff). */
  await db.schema.alterTable('connections').addColumn('next_refresh_at', 'bigint').execute();
  await db.schema.alterTable('connections').addColumn('last_error', 'text').execute();
  await db.schema.createIndex('connections_expires').on('connections').columns(['status', 'expires_at']).execute();
}
