import type { Kysely } from 'kysely';

// Device sign-in (issue 7, RFC 8628): one row per device authorization request. Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('device_authorizations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    /** SHA-256 of the device code the device polls with (the code itself is never stored). */
    .addColumn('device_code_hash', 'text', (c) => c.notNull().unique())
    /** The code the person types, 8 letters without the dash; unique among live requests. */
    .addColumn('user_code', 'text', (c) => c.notNull())
    /** Which application asks (shown on the approval page). */
    .addColumn('client_id', 'text', (c) => c.notNull())
    /** pending, approved, denied or used (tokens issued). */
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text')
    /** Seconds the device must wait between polls (raised by slow_down). */
    .addColumn('interval_s', 'integer', (c) => c.notNull())
    .addColumn('last_polled_at', 'bigint')
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_at', 'bigint')
    .execute();
  await db.schema
    .createIndex('device_authorizations_user_code')
    .on('device_authorizations')
    .columns(['user_code', 'expires_at'])
    .execute();
}
