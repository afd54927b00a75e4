import type { Kysely } from 'kysely';

// LLM providers and the model routing table of each tenant (issue 4). Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('llm_providers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('base_url', 'text', (c) => c.notNull())
    /** The shared provider key, AES-256-GCM under the master key; never returned, never sent to a client. */
    .addColumn('api_key_sealed', 'text', (c) => c.notNull())
    /** JSON array of the provider's model ids this tenant offers through it. */
    .addColumn('models', 'text', (c) => c.notNull())
    .addColumn('priority', 'integer', (c) => c.notNull())
    .addColumn('disabled_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('llm_providers_tenant_name')
    .on('llm_providers')
    .columns(['tenant_id', 'name'])
    .unique()
    .execute();
}
