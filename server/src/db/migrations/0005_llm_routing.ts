import type { Kysely } from 'kysely';

// The LLM gateway's routing table, price table and per-tenant settings, and the plans' model
// allow-list (issue 4). Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  /** JSON array of the public model names (a trailing * matches a prefix) the plan may call; null: any. */
  await db.schema.alterTable('plans').addColumn('allowed_models', 'text').execute();

  // A public model name and the provider models that serve it, tried in order.
  await db.schema
    .createTable('llm_routes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('model', 'text', (c) => c.notNull())
    /** JSON array of {provider_id, model}. */
    .addColumn('targets', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('llm_routes_tenant_model')
    .on('llm_routes')
    .columns(['tenant_id', 'model'])
    .unique()
    .execute();

  // USD per million tokens, as micro-dollars (so 0.15 $/M is 150000), for a provider model
  // ("model") or one provider's model ("provider/model").
  await db.schema
    .createTable('llm_prices')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('model', 'text', (c) => c.notNull())
    .addColumn('input_micros', 'bigint', (c) => c.notNull())
    .addColumn('output_micros', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('llm_prices_pk', ['tenant_id', 'model'])
    .execute();

  // The gateway's settings per tenant (absent: the defaults, response cache off).
  await db.schema
    .createTable('llm_settings')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id'))
    .addColumn('cache_enabled', 'integer', (c) => c.notNull())
    .addColumn('cache_ttl_seconds', 'integer', (c) => c.notNull())
    /** 'tokens': a cached answer is charged like the call it repeats; 'free': it is not charged. */
    .addColumn('cache_charge', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}
