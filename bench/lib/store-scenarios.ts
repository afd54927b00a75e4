// The optional-store scenarios of `npm run bench`: a Gatehouse with its rate-limit counters in
// Redis, and one on PostgreSQL (usage summary over a month of usage). Each runs only when its
// store answers and is skipped with the reason otherwise. run.ts passes in what they share with
// the rest of the bench (StoreContext); nothing here imports run.ts.
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import type { LoadResult, LoadSpec } from '../load.js';
import type { SequentialResult, SequentialSpec } from '../sequential.js';
import { createFixtures, type Gatehouse, type StoreEnv, startGatehouse } from './gatehouse.js';
import { probe, runJson, stopChild } from './procs.js';
import type { LimitsComparison, Results, UsageLatency, UsageSummaryBench } from './report.js';
import { postgresReachable, redisReachable, shown } from './stores.js';
import {
  type BenchDatabase,
  createBenchDatabase,
  dropBenchDatabase,
  fillUsage,
  nameBenchDatabase,
} from './usage-db.js';

/** What the scenarios take from run.ts: its helpers and settings, and the lists they add to. */
export interface StoreContext {
  /** The repository root (Gatehouse and the client scripts are started from it). */
  root: string;
  /** Where each Gatehouse here writes its output: server-<label>.log. */
  outDir: string;
  say: (text: string) => void;
  /** One load run with the bench's warmup and measuring time. */
  load: (name: string, spec: Omit<LoadSpec, 'warmupSeconds' | 'seconds'>) => Promise<LoadResult>;
  /** A fresh data directory, removed by run.ts on every way out. */
  newDataDir: () => string;
  /** Told the bench database while it may exist (null once dropped), so every way out of run.ts drops it. */
  trackDatabase: (db: BenchDatabase | null) => void;
  connections: number;
  requestTimeoutMs: number;
  /** GET /readyz after each scenario is added here. */
  readyz: Results['readyz'];
  /** How each Gatehouse here stopped is added here. */
  stops: Results['otherStops'];
}

// A month of usage of one busy user; the usage summary reads it one request at a time.
const USAGE_EVENTS = 1_000_000;

// The /me comparison, also run by run.ts with the counters in memory (the SQLite Gatehouse).
export const LIMITED = 'GET /api/auth/me, API key, limited plan';
export const UNLIMITED = 'GET /api/auth/me, API key, unlimited plan';

export function compareLimits(limited: LoadResult, unlimited: LoadResult, target: number): LimitsComparison['outcome'] {
  const ratio = limited.rps / unlimited.rps;
  return { status: 'measured', limited, unlimited, ratio, met: ratio >= target };
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** A part that broke is reported as such (and the exit code says so); the rest of the bench still reports. */
export function failed(say: StoreContext['say'], what: string, error: unknown): { status: 'failed'; reason: string } {
  say(`${what} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
  return { status: 'failed', reason: message(error).split('\n')[0] };
}

/**
 * Starts a Gatehouse of its own (own data directory and log), runs `work`, stops it whatever
 * happens. Also used by the LLM gateway scenarios (lib/llm-scenarios.ts).
 */
export async function withGatehouse<T>(
  ctx: Pick<StoreContext, 'root' | 'outDir' | 'newDataDir' | 'stops'>,
  label: string,
  stores: StoreEnv,
  work: (gatehouse: Gatehouse) => Promise<T>,
): Promise<T> {
  const log = createWriteStream(join(ctx.outDir, `server-${label}.log`));
  try {
    const gatehouse = await startGatehouse(ctx.root, ctx.newDataDir(), log, stores);
    try {
      return await work(gatehouse);
    } finally {
      ctx.stops.push({ gatehouse: label, how: await stopChild(gatehouse.child) });
    }
  } finally {
    log.end();
  }
}

/** The /me comparison again with the counters in Redis: every counted request is a round trip to it. */
export async function limitsOnRedis(
  ctx: StoreContext,
  { url, target }: { url: string; target: number },
): Promise<LimitsComparison['outcome']> {
  const { say } = ctx;
  const reachable = await redisReachable(url);
  if (!reachable.ok) {
    say(`Redis: not reachable at ${shown(url)} (${reachable.reason}), skipped`);
    return { status: 'skipped', reason: `not reachable: ${reachable.reason}` };
  }
  say(`Redis: a Gatehouse with REDIS_URL=${shown(url)} (its output: .bench/server-redis.log)`);
  try {
    return await withGatehouse(ctx, 'redis', { REDIS_URL: url }, async ({ baseUrl, setupToken }) => {
      const f = await createFixtures(baseUrl, await setupToken, { crowd: false });
      const run = async (name: string, key: string) => {
        const result = await ctx.load(`Redis: ${name}`, {
          url: `${baseUrl}/api/auth/me`,
          method: 'GET',
          headers: { authorization: `Bearer ${key}` },
          connections: ctx.connections,
        });
        ctx.readyz.push({ after: `Redis: ${name}`, status: await probe(`${baseUrl}/readyz`, 3_000) });
        return result;
      };
      const limited = await run(LIMITED, f.apiKey);
      const unlimited = await run(UNLIMITED, f.unlimitedApiKey);
      return compareLimits(limited, unlimited, target);
    });
  } catch (error) {
    return failed(say, 'Redis limits', error);
  }
}

/** totals.llm_requests of one answer: checked before measuring, so the latency is of the real summary. */
async function llmRequestsIn(url: string, token: string): Promise<number> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status} ${text.slice(0, 300)}`);
  return (JSON.parse(text) as { totals: { llm_requests: number } }).totals.llm_requests;
}

/**
 * GET /api/usage (the user's API key) and GET /api/admin/usage (the service key) over a month of
 * one user's usage, Gatehouse on a fresh PostgreSQL database that is dropped afterwards.
 */
export async function usageOnPostgres(
  ctx: StoreContext,
  { url: pgUrl, targetP99Ms, warmup, count }: { url: string; targetP99Ms: number; warmup: number; count: number },
): Promise<UsageSummaryBench['outcome']> {
  const { say } = ctx;
  const reachable = await postgresReachable(pgUrl);
  if (!reachable.ok) {
    say(`PostgreSQL: not reachable at ${shown(pgUrl)} (${reachable.reason}), skipped`);
    return { status: 'skipped', reason: `not reachable: ${reachable.reason}` };
  }
  const db = nameBenchDatabase(pgUrl);
  ctx.trackDatabase(db); // from here on every way out drops it
  say(`PostgreSQL: a Gatehouse on database ${db.name} (its output: .bench/server-postgres.log)`);
  try {
    await createBenchDatabase(db);
    return await withGatehouse(ctx, 'postgres', { DATABASE_URL: db.url }, async ({ baseUrl, setupToken }) => {
      const f = await createFixtures(baseUrl, await setupToken, { crowd: false });
      say(`  writing ${USAGE_EVENTS.toLocaleString('en-US')} usage events, their rollups and the budget (SQL)`);
      const fixture = await fillUsage(db.url, f, USAGE_EVENTS);
      const requests: UsageLatency[] = [];
      for (const [name, path, token] of [
        ['GET /api/usage, user API key', '/api/usage', f.apiKey],
        ['GET /api/admin/usage, service key', '/api/admin/usage', f.serviceKey],
      ] as const) {
        const url = `${baseUrl}${path}`;
        const llmRequests = await llmRequestsIn(url, token);
        say(`  ${name}: one at a time, ${warmup} warmup + ${count}`);
        const spec: SequentialSpec = {
          url,
          headers: { authorization: `Bearer ${token}` },
          warmup,
          count,
          timeoutMs: ctx.requestTimeoutMs,
        };
        const result = await runJson<SequentialResult>(join(ctx.root, 'bench/sequential.ts'), spec, 120_000);
        const allOk = Object.keys(result.statusCodes).every((code) => code === '200');
        const met = allOk && llmRequests === USAGE_EVENTS && result.p99 < targetP99Ms;
        requests.push({ ...result, name, llmRequests, met });
        ctx.readyz.push({ after: `PostgreSQL: ${name}`, status: await probe(`${baseUrl}/readyz`, 3_000) });
      }
      return {
        status: 'measured' as const,
        database: db.name,
        events: fixture.events,
        rollupRows: fixture.rollupRows,
        tokensUsed: fixture.tokensUsed,
        fixtureSeconds: fixture.seconds,
        requests,
      };
    });
  } catch (error) {
    return failed(say, 'PostgreSQL usage summary', error);
  } finally {
    // Gatehouse has stopped (withGatehouse); if this fails, run.ts's cleanUp tries again synchronously.
    try {
      await dropBenchDatabase(db);
      ctx.trackDatabase(null);
    } catch (error) {
      say(`could not drop database ${db.name} yet: ${message(error)}`);
    }
  }
}
