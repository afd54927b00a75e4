import type { Kysely } from 'kysely';
import { monotonicFactory } from 'ulid';

// The seeds' tiers (seeds 000 and 001), created for every tenant that exists at this migration;
// new tenants get them from the plans service. Forward-only: never edit once landed.
const SEED_PLANS = [
  {
    name: 'free',
    requests_per_hour: 100,
    llm_requests_per_hour: 50,
    max_tokens_per_request: 1_000,
    tokens_per_month: 10_000,
  },
  {
    name: 'pro',
    requests_per_hour: 1_000,
    llm_requests_per_hour: 500,
    max_tokens_per_request: 4_000,
    tokens_per_month: 100_000,
  },
  {
    name: 'enterprise',
    requests_per_hour: 10_000,
    llm_requests_per_hour: 5_000,
    max_tokens_per_request: 8_000,
    tokens_per_month: 1_000_000,
  },
];

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('plans')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('requests_per_hour', 'bigint')
    .addColumn('llm_requests_per_hour', 'bigint')
    .addColumn('max_tokens_per_request', 'bigint')
    .addColumn('tokens_per_month', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('plans_tenant_name').on('plans').columns(['tenant_id', 'name']).unique().execute();
  await db.schema.alterTable('tenants').addColumn('default_plan_id', 'text').execute();
  await db.schema.alterTable('users').addColumn('plan_id', 'text').execute();

  const ulid = monotonicFactory();
  const now = Date.now();
  const tenants = await db.selectFrom('tenants').select('id').execute();
  for (const tenant of tenants) {
    for (const plan of SEED_PLANS) {
      const id = `pln_${ulid(now).toLowerCase()}`;
      await db
        .insertInto('plans')
        .values({ id, tenant_id: tenant.id, ...plan, created_at: now, updated_at: now })
        .execute();
      if (plan.name === 'free')
        await db.updateTable('tenants').set({ default_plan_id: id }).where('id', '=', tenant.id).execute();
    }
  }
}
