import type { Kysely } from 'kysely';

// The credential vault (issue 5): per-tenant data keys and the connections they encrypt. Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  // Envelope encryption: each tenant's data keys, wrapped (AES-256-GCM) by the master key. A
  // connection names the version it is encrypted under; the newest version encrypts new writes.
  await db.schema
    .createTable('vault_keys')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('wrapped', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('vault_keys_pk', ['tenant_id', 'version'])
    .execute();

  // Seed 004's third_party_auth: one row per tenant, user and service.
  await db.schema
    .createTable('connections')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    /** Whose: a Gatehouse user id, or the app's own id for its user (seed 004's "user123"). */
    .addColumn('owner', 'text', (c) => c.notNull())
    /** Set when the owner is a Gatehouse user. */
    .addColumn('user_id', 'text', (c) => c.references('users.id'))
    .addColumn('service', 'text', (c) => c.notNull())
    /** The auth data (any JSON), AES-256-GCM under the tenant's data key `key_version`. */
    .addColumn('auth_data_sealed', 'text', (c) => c.notNull())
    .addColumn('key_version', 'integer', (c) => c.notNull())
    .addColumn('expires_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('connections_owner_service')
    .on('connections')
    .columns(['tenant_id', 'owner', 'service'])
    .unique()
    .execute();
  await db.schema
    .createIndex('connections_key_version')
    .on('connections')
    .columns(['tenant_id', 'key_version'])
    .execute();
}
