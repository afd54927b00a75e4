import { transaction } from '../../db/index.js';
import type { UsageRollupTable } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { invalidField, notFound } from '../../errors.js';
import type { Principal } from '../../http/principal.js';
import { requireUser } from '../accounts/accounts.service.js';
import { limitsOf } from '../plans/plans.service.js';
import { findReservation } from './budget.repo.js';
import { type BudgetOwner, budgetOf, presentBudget } from './budget.service.js';
import { commitLeases, drainLeases, restoreLeases, writeLeases } from './budget-lease-flush.js';
import { bucketStart, periodAt } from './periods.js';
import {
  applyLimitStates,
  type HeaderSink,
  hitLimits,
  type LimitState,
  peekLimits,
  requestLimitSpecs,
} from './rate-limits.js';
import { addToRollups, groupRollups, insertUsageEvents, totalRollups } from './usage.repo.js';

/**
 * Counts an authenticated request: in the usage rollups (buffered) and against the caller's
 * hourly request limits (the plan's per user, the key's own per key), then calls `done` (with the
 * 429 when over). Callback style, so unlimited callers cost no promise. Operators and service
 * keys are not on plans and are never limited; limits off (RATE_LIMITS=off) limits no one.
 */
export function meterRequest(deps: Deps, reply: HeaderSink, principal: Principal, done: (error?: Error) => void): void {
  if (principal.kind !== 'user') {
    done();
    return;
  }
  const specs =
    deps.config.limits.enabled && principal.role !== 'operator' ? requestLimitSpecs(principal, 'requests') : [];
  const count = () =>
    deps.requestCounts.add(principal.tenantId, principal.userId, principal.apiKeyId, deps.clock.now());
  if (specs.length === 0) {
    count();
    done();
    return;
  }
  hitLimits(deps, specs).then((states) => {
    try {
      applyLimitStates(deps, reply, states);
    } catch (error) {
      done(error as Error); // the 429; a refused request is not counted as usage
      return;
    }
    count();
    done();
  }, done);
}

/**
 * Writes, in one transaction, the queued usage events and request counts with their rollups, and
 * the budget leases' charges (budget-lease-flush.ts): a charge and its record stand or fall together.
 * What fails is kept for the next try. One flush at a time; while one runs, callers share the
 * one that waits for it (it writes everything queued when it starts). `final` (shutdown) gives
 * back every lease.
 */
export function flushUsage(deps: Deps, options: { final?: boolean } = {}): Promise<void> {
  const registry = deps.budgetLeases;
  if (registry.nextFlush && !options.final) return registry.nextFlush;
  const run: Promise<void> = (registry.flushing ?? Promise.resolve())
    .catch(() => undefined)
    .then(() => {
      if (registry.nextFlush === run) registry.nextFlush = null;
      return writeUsage(deps, options);
    });
  registry.nextFlush = run;
  registry.flushing = run;
  const done = () => {
    if (registry.flushing === run) registry.flushing = null;
  };
  run.then(done, done);
  return run;
}

async function writeUsage(deps: Deps, options: { final?: boolean }): Promise<void> {
  const batch = deps.requestCounts.drain();
  const leaseWrites = drainLeases(deps, options);
  if (batch.events.length === 0 && batch.deltas.length === 0 && leaseWrites.length === 0) return;
  let written: Awaited<ReturnType<typeof writeLeases>>;
  try {
    written = await transaction(deps.db.kysely, async (trx) => {
      await insertUsageEvents(trx, batch.events);
      await addToRollups(trx, batch.deltas);
      // Last: on PostgreSQL the budget rows stay locked only for the end of the transaction.
      return writeLeases(trx, deps, leaseWrites);
    });
  } catch (error) {
    deps.requestCounts.restore(batch);
    restoreLeases(leaseWrites);
    throw error;
  }
  commitLeases(deps, written);
}

/** The budget owner for a user named by an app backend (service key) or an admin. */
export async function ownerOfUser(
  deps: Deps,
  tenantId: string,
  userId: string,
  apiKeyId: string | null = null,
): Promise<BudgetOwner> {
  const user = await requireUser(deps, tenantId, userId);
  return { tenantId, userId, apiKeyId, limits: await limitsOf(deps, tenantId, user.plan_id) };
}

/** The owner of a reservation, for settling or releasing it by id. */
export async function ownerOfReservation(deps: Deps, tenantId: string, id: string): Promise<BudgetOwner> {
  // Budget leases (lse_…) share the table but are this service's own, never the API's.
  const reservation = id.startsWith('rsv_') ? await findReservation(deps.db.kysely, tenantId, id) : undefined;
  if (!reservation) throw notFound('Reservation');
  return ownerOfUser(deps, tenantId, reservation.user_id, reservation.api_key_id);
}

/** Costs are stored in millionths of a US dollar (integers sum exactly). */
export const MICROS = 1_000_000;

type Sums = Pick<
  UsageRollupTable,
  'requests' | 'llm_requests' | 'errors' | 'prompt_tokens' | 'completion_tokens' | 'cost_micros'
>;

function presentSums(row: Sums | undefined) {
  const n = (value: number | string | undefined) => Number(value ?? 0);
  const prompt = n(row?.prompt_tokens);
  const completion = n(row?.completion_tokens);
  return {
    requests: n(row?.requests),
    llm_requests: n(row?.llm_requests),
    errors: n(row?.errors),
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    cost_usd: n(row?.cost_micros) / MICROS,
  };
}

function presentLimit(state: LimitState | undefined) {
  return state
    ? { limit: state.limit, remaining: state.remaining, reset_at: new Date(state.resetAt).toISOString() }
    : null;
}

/** GET /api/usage: a user's period totals, what is left, limits now, and usage per day. */
export async function usageSummary(deps: Deps, owner: BudgetOwner) {
  await flushUsage(deps);
  const budget = await budgetOf(deps, owner);
  const { period } = budget;
  const query = {
    tenantId: owner.tenantId,
    userId: owner.userId,
    granularity: 'day' as const,
    from: period.start,
    to: period.end,
  };
  const [totals, days, requestStates, llmStates] = await Promise.all([
    totalRollups(deps.db.kysely, query),
    groupRollups(deps.db.kysely, query, 'bucket_start', 62),
    peekLimits(deps, requestLimitSpecs(owner, 'requests')),
    peekLimits(deps, requestLimitSpecs(owner, 'llm_requests')),
  ]);
  const { limits } = owner;
  return {
    ...presentBudget(budget),
    limits: {
      requests_per_hour: presentLimit(requestStates.find((s) => s.name === 'requests')),
      llm_requests_per_hour: presentLimit(llmStates.find((s) => s.name === 'llm_requests')),
      key_requests_per_hour: presentLimit(requestStates.find((s) => s.name === 'key_requests')),
      key_llm_requests_per_hour: presentLimit(llmStates.find((s) => s.name === 'key_llm_requests')),
      max_tokens_per_request: limits.maxTokensPerRequest,
      max_prompt_tokens_per_request: limits.maxPromptTokensPerRequest,
    },
    totals: presentSums(totals),
    daily: days.map((row) => ({ date: new Date(Number(row.key)).toISOString().slice(0, 10), ...presentSums(row) })),
  };
}

const MAX_BUCKETS = { hour: 24 * 62, day: 366 * 2 };

/** GET /api/admin/usage: the tenant's usage in a time range, per user, per model and over time. */
export async function tenantUsage(
  deps: Deps,
  tenantId: string,
  input: { from?: string; to?: string; granularity?: 'hour' | 'day'; user_id?: string },
) {
  await flushUsage(deps);
  const granularity = input.granularity ?? 'day';
  const now = deps.clock.now();
  const parse = (text: string | undefined, field: string, fallback: number) => {
    if (text === undefined) return fallback;
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) {
      throw invalidField(field, 'is not a date', {
        in: 'querystring',
        summary: `${field} must be an ISO 8601 date or date-time`,
      });
    }
    return ms;
  };
  const from = bucketStart(granularity, parse(input.from, 'from', periodAt('month', now).start));
  const to = parse(input.to, 'to', bucketStart(granularity, now) + (granularity === 'hour' ? 3_600_000 : 86_400_000));
  const size = granularity === 'hour' ? 3_600_000 : 86_400_000;
  if (to <= from || (to - from) / size > MAX_BUCKETS[granularity]) {
    throw invalidField('to', 'out of range', {
      in: 'querystring',
      summary: `from must be before to, and the range at most ${MAX_BUCKETS[granularity]} ${granularity}s`,
    });
  }
  const query = { tenantId, granularity, from, to, userId: input.user_id };
  const db = deps.db.kysely;
  const [totals, byUser, byModel, series] = await Promise.all([
    totalRollups(db, query),
    groupRollups(db, query, 'user_id', 100),
    groupRollups(db, query, 'model', 100),
    groupRollups(db, query, 'bucket_start', MAX_BUCKETS[granularity]),
  ]);
  return {
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    granularity,
    totals: presentSums(totals),
    by_user: byUser.map((row) => ({ user_id: String(row.key), ...presentSums(row) })),
    by_model: byModel.filter((row) => row.key !== '').map((row) => ({ model: String(row.key), ...presentSums(row) })),
    series: series.map((row) => ({ bucket_start: new Date(Number(row.key)).toISOString(), ...presentSums(row) })),
  };
}
