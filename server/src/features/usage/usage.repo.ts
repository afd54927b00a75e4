import { type Kysely, sql } from 'kysely';
import type { Database, UsageEventTable, UsageRollupTable } from '../../db/schema.js';
import { bucketStart } from './periods.js';

export type UsageEventRow = UsageEventTable;

/** What one metered thing adds to the rollups. */
export interface UsageDelta {
  tenantId: string;
  userId: string;
  apiKeyId: string | null;
  model: string | null;
  provider: string | null;
  at: number;
  requests: number;
  llmRequests: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
  costMicros: number;
}

const SUMS = ['requests', 'llm_requests', 'errors', 'prompt_tokens', 'completion_tokens', 'cost_micros'] as const;

export async function insertUsageEvents(db: Kysely<Database>, rows: UsageEventRow[]): Promise<void> {
  // 13 parameters a row: stay well under SQLite's and PostgreSQL's parameter limits.
  for (let i = 0; i < rows.length; i += 500) {
    await db
      .insertInto('usage_events')
      .values(rows.slice(i, i + 500))
      .execute();
  }
}

/**
 * Adds deltas to the hourly and daily rollups with one upsert. Rows are merged first (an upsert
 * may touch a row once) and sorted, so two instances flushing at once lock rows in the same order.
 */
export async function addToRollups(db: Kysely<Database>, deltas: UsageDelta[]): Promise<void> {
  const merged = new Map<string, UsageRollupTable>();
  for (const delta of deltas) {
    for (const granularity of ['hour', 'day'] as const) {
      const row: UsageRollupTable = {
        tenant_id: delta.tenantId,
        granularity,
        bucket_start: bucketStart(granularity, delta.at),
        user_id: delta.userId,
        api_key_id: delta.apiKeyId ?? '',
        model: delta.model ?? '',
        provider: delta.provider ?? '',
        requests: delta.requests,
        llm_requests: delta.llmRequests,
        errors: delta.errors,
        prompt_tokens: delta.promptTokens,
        completion_tokens: delta.completionTokens,
        cost_micros: delta.costMicros,
      };
      const key = [
        row.tenant_id,
        granularity,
        row.bucket_start,
        row.user_id,
        row.api_key_id,
        row.model,
        row.provider,
      ].join('\u0000');
      const existing = merged.get(key);
      if (!existing) merged.set(key, row);
      else for (const column of SUMS) existing[column] += row[column];
    }
  }
  if (merged.size === 0) return;
  const rows = [...merged].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, row]) => row);
  // 13 parameters a row: stay well under SQLite's and PostgreSQL's parameter limits.
  for (let i = 0; i < rows.length; i += 500) {
    await db
      .insertInto('usage_rollups')
      .values(rows.slice(i, i + 500))
      .onConflict((oc) =>
        oc
          .columns(['tenant_id', 'granularity', 'bucket_start', 'user_id', 'api_key_id', 'model', 'provider'])
          .doUpdateSet((eb) =>
            Object.fromEntries(
              SUMS.map((column) => [column, eb(eb.ref(`usage_rollups.${column}`), '+', eb.ref(`excluded.${column}`))]),
            ),
          ),
      )
      .execute();
  }
}

export interface RollupQuery {
  tenantId: string;
  granularity: 'hour' | 'day';
  from: number;
  to: number;
  userId?: string;
}

const sums = () => SUMS.map((column) => sql<number>`coalesce(sum(${sql.ref(column)}), 0)`.as(column));

function rollupsIn(db: Kysely<Database>, query: RollupQuery) {
  let q = db
    .selectFrom('usage_rollups')
    .where('tenant_id', '=', query.tenantId)
    .where('granularity', '=', query.granularity)
    .where('bucket_start', '>=', query.from)
    .where('bucket_start', '<', query.to);
  if (query.userId) q = q.where('user_id', '=', query.userId);
  return q;
}

/** Sums of the rollups in [from, to). */
export async function totalRollups(db: Kysely<Database>, query: RollupQuery) {
  return rollupsIn(db, query).select(sums()).executeTakeFirstOrThrow();
}

/**
 * Sums of the rollups in [from, to) per bucket (in time order) or per user or model (largest
 * token use first), as `key`.
 */
export async function groupRollups(
  db: Kysely<Database>,
  query: RollupQuery,
  by: 'bucket_start' | 'user_id' | 'model',
  limit: number,
) {
  const grouped = rollupsIn(db, query)
    .select(sql<string | number>`${sql.ref(by)}`.as('key'))
    .select(sums())
    .groupBy(by);
  const ordered =
    by === 'bucket_start'
      ? grouped.orderBy(by, 'asc')
      : grouped.orderBy(sql`sum(prompt_tokens) + sum(completion_tokens)`, 'desc').orderBy(by, 'asc');
  return ordered.limit(limit).execute();
}
