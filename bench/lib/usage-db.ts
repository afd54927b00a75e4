import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** A database this bench created on the server at `adminUrl`, and must drop. */
export interface BenchDatabase {
  adminUrl: string;
  name: string;
  /** adminUrl pointing at the new database: Gatehouse's DATABASE_URL. */
  url: string;
}

const TSX = import.meta.resolve('tsx');
const DROP_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'drop-database.ts');

/** Names this bench may drop: only ever its own, so a typo cannot reach another database. */
export const isBenchDatabase = (name: string) => /^gatehouse_bench_[0-9a-f]{12}$/.test(name);

/**
 * Names a new database `gatehouse_bench_<random hex>` on the server at `adminUrl`. Named before it
 * is created, so cleanup that runs while CREATE DATABASE is in flight still knows what to drop.
 */
export function nameBenchDatabase(adminUrl: string): BenchDatabase {
  const name = `gatehouse_bench_${randomBytes(6).toString('hex')}`;
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { adminUrl, name, url: url.toString() };
}

/** Creates it, empty: Gatehouse's migrations make the schema when it starts. */
export async function createBenchDatabase(db: BenchDatabase): Promise<void> {
  if (!isBenchDatabase(db.name)) throw new Error(`refusing to create ${db.name}: not a bench database name`);
  const client = new pg.Client({ connectionString: db.adminUrl, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${db.name}`);
  } finally {
    await client.end();
  }
}

/**
 * Drops the database, closing whatever is still connected to it (WITH (FORCE), PostgreSQL 13+;
 * plain DROP on older servers, which fails while a connection is left).
 */
export async function dropBenchDatabase(db: { adminUrl: string; name: string }): Promise<void> {
  if (!isBenchDatabase(db.name)) throw new Error(`refusing to drop ${db.name}: not a bench database`);
  const client = new pg.Client({ connectionString: db.adminUrl, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${db.name} WITH (FORCE)`).catch((error: { code?: string }) => {
      if (error.code !== '42601') throw error; // syntax error: a server before 13
      return client.query(`DROP DATABASE IF EXISTS ${db.name}`);
    });
  } finally {
    await client.end();
  }
}

/**
 * The same, synchronously (from 'exit' and signal handlers, where nothing asynchronous runs):
 * in a child node process, waited for. Returns what went wrong, if anything.
 */
export function dropBenchDatabaseSync(db: BenchDatabase): string | null {
  const result = spawnSync(process.execPath, ['--import', TSX, DROP_SCRIPT], {
    input: JSON.stringify({ adminUrl: db.adminUrl, name: db.name }),
    encoding: 'utf8',
    timeout: 15_000,
  });
  if (result.status === 0) return null;
  return (result.stderr || result.error?.message || `exit ${result.status ?? result.signal}`).trim();
}

export interface UsageFixture {
  tenantId: string;
  userId: string;
  apiKeyId: string;
  events: number;
  /** What the fixture made: for checking the API's answers against. */
  tokensUsed: number;
  periodStart: number;
  periodEnd: number;
  /** Rows written to usage_rollups (hour and day). */
  rollupRows: number;
  seconds: { events: number; rollups: number; analyze: number };
}

/**
 * Writes `events` LLM usage events for one user spread evenly over the current UTC month up to
 * now, straight into the database (they do not go through the API: a million calls would take far
 * longer than the bench may), then the rollups and token budget that Gatehouse would have written
 * for them. The rollups mirror usage.repo.ts `addToRollups`: one row per (tenant, granularity,
 * bucket start, user, api key or '', model or '', provider or '') with hour and day buckets,
 * requests 0 and llm_requests 1 per LLM event, errors 1 per status other than 'ok', tokens and
 * cost summed; merged into existing rows the same way (ON CONFLICT … + excluded). The budget is
 * the month's row with tokens_used = prompt + completion tokens of every event, as settling does.
 * Four models of three providers at list prices, deterministic pseudo-random token counts
 * (prompt 50–2,000, completion 10–800), one call in 50 an upstream error with no completion, one
 * in 5 without an API key (signed in with an access token).
 */
export async function fillUsage(
  url: string,
  who: { userId: string; apiKeyId: string },
  events: number,
): Promise<UsageFixture> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ tenant_id: string }>('SELECT tenant_id FROM users WHERE id = $1', [
      who.userId,
    ]);
    if (rows.length !== 1) throw new Error(`user ${who.userId} not found in the bench database`);
    const tenantId = rows[0].tenant_id;
    const now = Date.now();
    const at = new Date(now);
    const periodStart = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1);
    const periodEnd = Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1);

    let started = performance.now();
    // $1 tenant, $2 user, $3 key, $4 month start, $5 now, $6 how many. i is bigint so the
    // products below cannot overflow; created_at runs from the month's start to just before now.
    await client.query(
      `INSERT INTO usage_events (id, tenant_id, user_id, api_key_id, kind, model, provider, prompt_tokens,
         completion_tokens, cost_micros, latency_ms, status, created_at)
       SELECT 'use_' || lpad(to_hex(e.i), 26, '0'), $1::text, $2::text, CASE WHEN e.i % 5 = 0 THEN NULL ELSE $3::text END, 'llm',
         m.model, m.provider, e.prompt, e.completion,
         round(e.prompt * m.in_micros + e.completion * m.out_micros)::bigint,
         200 + (e.i * 31) % 3000, e.status, $4::bigint + (e.i * ($5::bigint - $4::bigint)) / $6::bigint
       FROM (
         SELECT i, 50 + (i * 7919) % 1951 AS prompt,
           CASE WHEN i % 50 = 0 THEN 0 ELSE 10 + (i * 104729) % 791 END AS completion,
           CASE WHEN i % 50 = 0 THEN 'upstream_error' ELSE 'ok' END AS status
         FROM generate_series(0::bigint, $6::bigint - 1) AS i
       ) AS e
       JOIN (VALUES (0, 'gpt-4o-mini', 'openai', 0.15, 0.60), (1, 'gpt-4o', 'openai', 2.50, 10.00),
                    (2, 'claude-3-5-haiku', 'anthropic', 0.80, 4.00), (3, 'llama-3.1-70b', 'groq', 0.59, 0.79))
         AS m (n, model, provider, in_micros, out_micros) ON m.n = e.i % 4`,
      [tenantId, who.userId, who.apiKeyId, periodStart, now, events],
    );
    const eventSeconds = (performance.now() - started) / 1000;

    started = performance.now();
    const rollups = await client.query(
      `INSERT INTO usage_rollups (tenant_id, granularity, bucket_start, user_id, api_key_id, model, provider,
         requests, llm_requests, errors, prompt_tokens, completion_tokens, cost_micros)
       SELECT e.tenant_id, g.granularity, e.created_at - e.created_at % g.size, e.user_id,
         coalesce(e.api_key_id, ''), coalesce(e.model, ''), coalesce(e.provider, ''),
         0, count(*) FILTER (WHERE e.kind = 'llm'), count(*) FILTER (WHERE e.status <> 'ok'),
         sum(e.prompt_tokens), sum(e.completion_tokens), sum(e.cost_micros)
       FROM usage_events AS e
       CROSS JOIN (VALUES ('hour', 3600000::bigint), ('day', 86400000::bigint)) AS g (granularity, size)
       WHERE e.tenant_id = $1::text AND e.user_id = $2::text
       GROUP BY 1, 2, 3, 4, 5, 6, 7
       ON CONFLICT (tenant_id, granularity, bucket_start, user_id, api_key_id, model, provider) DO UPDATE SET
         requests = usage_rollups.requests + excluded.requests,
         llm_requests = usage_rollups.llm_requests + excluded.llm_requests,
         errors = usage_rollups.errors + excluded.errors,
         prompt_tokens = usage_rollups.prompt_tokens + excluded.prompt_tokens,
         completion_tokens = usage_rollups.completion_tokens + excluded.completion_tokens,
         cost_micros = usage_rollups.cost_micros + excluded.cost_micros`,
      [tenantId, who.userId],
    );
    const budget = await client.query<{ tokens_used: string }>(
      `INSERT INTO token_budgets (tenant_id, user_id, period_start, period_end, tokens_used, tokens_reserved,
         exceeded_at, updated_at)
       SELECT $1::text, $2::text, $3::bigint, $4::bigint, coalesce(sum(prompt_tokens + completion_tokens), 0), 0, NULL, $5::bigint
       FROM usage_events WHERE tenant_id = $1 AND user_id = $2 AND created_at >= $3::bigint AND created_at < $4::bigint
       ON CONFLICT (tenant_id, user_id, period_start) DO UPDATE SET
         tokens_used = token_budgets.tokens_used + excluded.tokens_used, updated_at = excluded.updated_at
       RETURNING tokens_used`,
      [tenantId, who.userId, periodStart, periodEnd, now],
    );
    const rollupSeconds = (performance.now() - started) / 1000;

    // Fresh statistics, as autovacuum would have after a month of writes: the planner sees a big table.
    started = performance.now();
    await client.query('ANALYZE');
    return {
      tenantId,
      userId: who.userId,
      apiKeyId: who.apiKeyId,
      events,
      tokensUsed: Number(budget.rows[0].tokens_used),
      periodStart,
      periodEnd,
      rollupRows: rollups.rowCount ?? 0,
      seconds: { events: eventSeconds, rollups: rollupSeconds, analyze: (performance.now() - started) / 1000 },
    };
  } finally {
    await client.end();
  }
}
