import { type Kysely, PostgresAdapter, sql } from 'kysely';

// Limits, token budgets, usage metering and the event outbox (issue 3). Forward-only.
// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then.
export async function up(db: Kysely<any>): Promise<void> {
  // How often a plan's token budget resets: calendar month (UTC) unless the plan says otherwise.
  await db.schema
    .alterTable('plans')
    .addColumn('token_period', 'text', (c) => c.notNull().defaultTo('month'))
    .execute();
  // Counters may pass 2^31 within a window (verify's ratelimits take a cost): 64-bit on PostgreSQL,
  // where this table is used (SQLite integers are 64-bit already).
  if (db.getExecutor().adapter instanceof PostgresAdapter) {
    await sql`alter table rate_limits alter column points type bigint`.execute(db);
  }
  // A key may carry tighter hourly limits than its user's plan (null: the plan's).
  await db.schema.alterTable('api_keys').addColumn('requests_per_hour', 'bigint').execute();
  await db.schema.alterTable('api_keys').addColumn('llm_requests_per_hour', 'bigint').execute();

  // One row per user and budget period: what is charged, and what is held by open reservations.
  await db.schema
    .createTable('token_budgets')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('period_start', 'bigint', (c) => c.notNull())
    .addColumn('period_end', 'bigint', (c) => c.notNull())
    .addColumn('tokens_used', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('tokens_reserved', 'bigint', (c) => c.notNull().defaultTo(0))
    /** When the budget first ran out this period (quota.exceeded is emitted once, by whoever sets it). */
    .addColumn('exceeded_at', 'bigint')
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('token_budgets_pk', ['tenant_id', 'user_id', 'period_start'])
    .execute();

  await db.schema
    .createTable('token_reservations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('api_key_id', 'text')
    .addColumn('period_start', 'bigint', (c) => c.notNull())
    .addColumn('tokens', 'bigint', (c) => c.notNull())
    /** held → settled | released | expired */
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('charged', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('closed_at', 'bigint')
    .execute();
  await db.schema
    .createIndex('token_reservations_held')
    .on('token_reservations')
    .columns(['status', 'expires_at'])
    .execute();
  await db.schema
    .createIndex('token_reservations_user')
    .on('token_reservations')
    .columns(['tenant_id', 'user_id', 'status'])
    .execute();

  // Metered events: LLM calls and credit charges, one row each. Plain requests are counted in the rollups only.
  await db.schema
    .createTable('usage_events')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('api_key_id', 'text')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('model', 'text')
    .addColumn('provider', 'text')
    .addColumn('prompt_tokens', 'bigint', (c) => c.notNull())
    .addColumn('completion_tokens', 'bigint', (c) => c.notNull())
    .addColumn('cost_micros', 'bigint', (c) => c.notNull())
    .addColumn('latency_ms', 'bigint')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('usage_events_user')
    .on('usage_events')
    .columns(['tenant_id', 'user_id', 'created_at'])
    .execute();

  // Hourly and daily sums per user, key, model and provider ('' when none), so dashboards read a
  // few hundred rows however many events there are.
  await db.schema
    .createTable('usage_rollups')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('granularity', 'text', (c) => c.notNull())
    .addColumn('bucket_start', 'bigint', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('api_key_id', 'text', (c) => c.notNull())
    .addColumn('model', 'text', (c) => c.notNull())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('requests', 'bigint', (c) => c.notNull())
    .addColumn('llm_requests', 'bigint', (c) => c.notNull())
    .addColumn('errors', 'bigint', (c) => c.notNull())
    .addColumn('prompt_tokens', 'bigint', (c) => c.notNull())
    .addColumn('completion_tokens', 'bigint', (c) => c.notNull())
    .addColumn('cost_micros', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('usage_rollups_pk', [
      'tenant_id',
      'granularity',
      'bucket_start',
      'user_id',
      'api_key_id',
      'model',
      'provider',
    ])
    .execute();
  await db.schema
    .createIndex('usage_rollups_user')
    .on('usage_rollups')
    .columns(['tenant_id', 'user_id', 'granularity', 'bucket_start'])
    .execute();

  // The outbox: events written in the transaction of the change that caused them; the webhook
  // and realtime workers deliver from here.
  await db.schema
    .createTable('events')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('events_tenant').on('events').columns(['tenant_id', 'id']).execute();
}
