import type { Kysely } from 'kysely';
import { afterCommit, transaction } from '../../db/index.js';
import type { Database, UsageKind } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError, notFound } from '../../errors.js';
import type { UserLimits } from '../../http/principal.js';
import { emitEvent } from '../events/events.service.js';
import {
  addToBudget,
  type BudgetKey,
  type BudgetRow,
  closeReservation,
  ensureBudget,
  findBudget,
  findExpiredHolds,
  findReservation,
  insertReservation,
  markExceeded,
  type ReservationRow,
  settleExpired,
} from './budget.repo.js';
import { type Period, periodAt } from './periods.js';

/** Whose budget: a user, the key they called with, and their limits. */
export interface BudgetOwner {
  tenantId: string;
  userId: string;
  apiKeyId: string | null;
  limits: UserLimits;
}

/** What a metered call used, recorded as one usage event and added to the rollups. */
export interface UsageRecord {
  kind: UsageKind;
  model?: string | null;
  provider?: string | null;
  promptTokens: number;
  completionTokens: number;
  costMicros?: number;
  latencyMs?: number | null;
  /** 'ok', or what went wrong ('error', 'upstream_error', 'cancelled'…). */
  status: string;
}

export interface BudgetView {
  plan: string;
  period: Period;
  limit: number | null;
  used: number;
  reserved: number;
  /** null when the plan has no token limit. */
  remaining: number | null;
}

export function presentBudget(budget: BudgetView) {
  return {
    plan: budget.plan,
    period_start: new Date(budget.period.start).toISOString(),
    period_end: new Date(budget.period.end).toISOString(),
    monthly_limit: budget.limit,
    tokens_used: budget.used,
    tokens_reserved: budget.reserved,
    tokens_remaining: budget.remaining,
  };
}

function keyOf(owner: BudgetOwner, period: Period): BudgetKey {
  return { tenantId: owner.tenantId, userId: owner.userId, periodStart: period.start };
}

/** After a write to a budget commits: this instance's /me shows the new figures at once. */
export function forgetBudget(deps: Deps, key: BudgetKey): void {
  deps.caches.auth.forget('me', `${key.tenantId}:${key.userId}`);
}

/**
 * The owner's budget in the period that contains `at` (now by default): its row, as this
 * instance's lease on it corrects it (budget-leases.ts).
 */
export async function budgetOf(deps: Deps, owner: BudgetOwner, at = deps.clock.now()): Promise<BudgetView> {
  await deps.budgetLeases.settled(keyOf(owner, periodAt(owner.limits.tokenPeriod, at)));
  return readBudget(deps, owner, at);
}

/** budgetOf without waiting for the lease's work in flight (for that work itself). */
export async function readBudget(deps: Deps, owner: BudgetOwner, at: number): Promise<BudgetView> {
  const period = periodAt(owner.limits.tokenPeriod, at);
  return viewOf(deps, owner, period, await findBudget(deps.db.kysely, keyOf(owner, period)));
}

/** The budget as a row shows it (after a write that returned it, no read needed). */
function viewOf(deps: Deps, owner: BudgetOwner, period: Period, row: BudgetRow | undefined): BudgetView {
  const stored = { used: row?.tokens_used ?? 0, reserved: row?.tokens_reserved ?? 0 };
  return budgetView(owner, period, deps.budgetLeases.adjust(keyOf(owner, period), stored));
}

/** The budget with these tokens used and reserved. */
export function budgetView(
  owner: BudgetOwner,
  period: Period,
  { used, reserved }: { used: number; reserved: number },
): BudgetView {
  const limit = owner.limits.tokenBudget;
  return {
    plan: owner.limits.plan,
    period,
    limit,
    used,
    reserved,
    remaining: limit === null ? null : Math.max(0, limit - used - reserved),
  };
}

/** The budget now, from the row a write returned when it is this period's (else read), told to the user's live connections. */
async function budgetAfter(deps: Deps, owner: BudgetOwner, row: BudgetRow | undefined, now: number) {
  const period = periodAt(owner.limits.tokenPeriod, now);
  return announceBudget(
    deps,
    owner,
    row && row.period_start === period.start ? viewOf(deps, owner, period, row) : await budgetOf(deps, owner, now),
  );
}

/** A user's budget changed: their realtime feed gets the latest (a few times a second at most). */
export function announceBudget(deps: Deps, owner: BudgetOwner, budget: BudgetView): BudgetView {
  deps.realtime.publishLatest(`usage:${owner.tenantId}:${owner.userId}`, () => ({
    tenantId: owner.tenantId,
    userId: owner.userId,
    item: { kind: 'usage', usage: presentBudget(budget) },
  }));
  return budget;
}

/** Retry-After of a refusal that only tokens held by calls in flight stand in the way of: they end within seconds. */
export const HELD_RETRY_SECONDS = 2;

/**
 * 429 quota_exceeded. Retry-After is the end of the period, unless what is used leaves room for
 * the call and only holds (calls in flight, another instance's slice) are in the way: then a
 * retry within seconds may succeed.
 */
export function quotaExceeded(budget: BudgetView, requested: number, now: number): AppError {
  const held = budget.limit !== null && budget.used + requested <= budget.limit;
  const retryAfter = held ? HELD_RETRY_SECONDS : Math.max(1, Math.ceil((budget.period.end - now) / 1000));
  const when = held
    ? `calls in flight hold the rest; retry in ${HELD_RETRY_SECONDS} s`
    : `it resets at ${new Date(budget.period.end).toISOString()}`;
  return new AppError(
    'quota_exceeded',
    `Token budget exhausted: ${budget.remaining} of ${budget.limit} tokens left this period, ${requested} needed; ${when}`,
    {
      headers: { 'retry-after': String(retryAfter) },
      details: { tokens_requested: requested, ...presentBudget(budget) },
    },
  );
}

/** Emits quota.exceeded once per user and period: only the caller that marks the budget first emits. */
export async function noteExceeded(trx: Kysely<Database>, deps: Deps, owner: BudgetOwner, period: Period) {
  const now = deps.clock.now();
  if (!(await markExceeded(trx, keyOf(owner, period), now))) return;
  await emitEvent(trx, deps, {
    tenantId: owner.tenantId,
    type: 'quota.exceeded',
    data: {
      user_id: owner.userId,
      plan: owner.limits.plan,
      limit: 'tokens',
      monthly_limit: owner.limits.tokenBudget,
      period_start: new Date(period.start).toISOString(),
      period_end: new Date(period.end).toISOString(),
    },
  });
}

/**
 * Ends reservations past their expiry that were never settled or released; returns the budgets
 * changed. A reservation's tokens are freed. A budget lease's (`lse_…`) are charged in full: its
 * instance stopped renewing it, most likely because it died, and may have served calls whose
 * charges it never wrote, up to the slice. Freeing the slice would let those tokens be spent
 * twice (ADR 0011); charging it loses at most the part no call used.
 */
export async function expireHolds(
  trx: Kysely<Database>,
  deps: Deps,
  holds: { id: string; tenant_id: string }[],
): Promise<BudgetKey[]> {
  const now = deps.clock.now();
  const changed: BudgetKey[] = [];
  for (const hold of holds) {
    const lease = hold.id.startsWith('lse_');
    const closed = await closeReservation(trx, hold.tenant_id, hold.id, {
      status: 'expired',
      charged: lease ? 'all' : null,
      now,
    });
    if (!closed) continue; // settled, released or expired by someone else meanwhile
    const key = { tenantId: hold.tenant_id, userId: closed.user_id, periodStart: closed.period_start };
    await addToBudget(trx, key, { reserved: -closed.tokens, used: lease ? closed.tokens : 0, limit: null, now });
    if (lease) {
      deps.log.warn(
        { tenantId: key.tenantId, userId: key.userId, lease: hold.id, tokens: closed.tokens },
        'budget lease expired unrenewed (its instance stopped): its slice is charged in full',
      );
    }
    changed.push(key);
  }
  return changed;
}

function assertTokens(tokens: number, what: string) {
  if (!Number.isSafeInteger(tokens) || tokens < 0) {
    throw new AppError('validation_failed', `${what} must be a whole number of tokens, 0 or more`);
  }
}

/**
 * Takes tokens from the owner's budget for this period, as a hold (`reserved`) or a charge
 * (`used`), only if they fit: one conditional update (see addToBudget). Only when that fails are
 * the period's row created and the owner's expired holds freed, and the update tried again. When
 * they still do not fit, marks the budget exceeded (quota.exceeded, once) and returns undefined;
 * the caller commits, so the mark and its event stand. Returns the budget row as updated.
 */
async function takeFromBudget(
  trx: Kysely<Database>,
  deps: Deps,
  owner: BudgetOwner,
  period: Period,
  take: { reserved: number; used: number },
): Promise<BudgetRow | undefined> {
  const now = deps.clock.now();
  const key = keyOf(owner, period);
  const change = { ...take, limit: owner.limits.tokenBudget, now };
  const taken = await addToBudget(trx, key, change);
  if (taken) return taken;
  await ensureBudget(trx, owner.tenantId, owner.userId, period, now);
  await expireHolds(trx, deps, await findExpiredHolds(trx, now, owner));
  const retaken = await addToBudget(trx, key, change);
  if (retaken) return retaken;
  await noteExceeded(trx, deps, owner, period);
  return undefined;
}

/**
 * Holds `tokens` of the owner's budget before a call (an LLM call's worst case). Concurrent
 * reservations can never together pass the budget, on any number of instances: the hold is one
 * conditional update of the budget row (see addToBudget). Throws 429 quota_exceeded when it does
 * not fit. An unsettled hold expires after TOKEN_RESERVATION_TTL (or `ttlMs`).
 */
export async function reserveTokens(
  deps: Deps,
  owner: BudgetOwner,
  tokens: number,
  options: { ttlMs?: number } = {},
): Promise<{ reservation: ReservationRow; budget: BudgetView }> {
  assertTokens(tokens, 'tokens');
  const now = deps.clock.now();
  const period = periodAt(owner.limits.tokenPeriod, now);
  const reservation: ReservationRow = {
    id: deps.ids.next('rsv'),
    tenant_id: owner.tenantId,
    user_id: owner.userId,
    api_key_id: owner.apiKeyId,
    period_start: period.start,
    tokens,
    status: 'held',
    charged: null,
    created_at: now,
    expires_at: now + (options.ttlMs ?? deps.config.limits.reservationTtlMs),
    closed_at: null,
  };
  const granted = await transaction(deps.db.kysely, async (trx) => {
    const row = await takeFromBudget(trx, deps, owner, period, { reserved: tokens, used: 0 });
    if (row) await insertReservation(trx, reservation);
    return row;
  });
  forgetBudget(deps, keyOf(owner, period));
  if (!granted) throw quotaExceeded(await budgetOf(deps, owner, now), tokens, now);
  return { reservation, budget: announceBudget(deps, owner, viewOf(deps, owner, period, granted)) };
}

/**
 * Queues the usage event and its rollups, written within a second by flushUsage (ADR 0008): after
 * a direct charge commits, or with the lease charge it records, in the same flush (ADR 0011).
 */
export function recordUsage(deps: Deps, owner: BudgetOwner, usage: UsageRecord) {
  const now = deps.clock.now();
  deps.requestCounts.record(
    {
      id: deps.ids.next('use'),
      tenant_id: owner.tenantId,
      user_id: owner.userId,
      api_key_id: owner.apiKeyId,
      kind: usage.kind,
      model: usage.model ?? null,
      provider: usage.provider ?? null,
      prompt_tokens: usage.promptTokens,
      completion_tokens: usage.completionTokens,
      cost_micros: usage.costMicros ?? 0,
      latency_ms: usage.latencyMs ?? null,
      status: usage.status,
      created_at: now,
    },
    {
      tenantId: owner.tenantId,
      userId: owner.userId,
      apiKeyId: owner.apiKeyId,
      model: usage.model ?? null,
      provider: usage.provider ?? null,
      at: now,
      requests: 0,
      llmRequests: usage.kind === 'llm' ? 1 : 0,
      errors: usage.status === 'ok' ? 0 : 1,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      costMicros: usage.costMicros ?? 0,
    },
  );
}

/** Marks the budget exceeded (once) when the charge used it up (`row`: the budget as charged). */
export async function checkExhausted(
  trx: Kysely<Database>,
  deps: Deps,
  owner: BudgetOwner,
  row: BudgetRow | undefined,
) {
  const limit = owner.limits.tokenBudget;
  if (limit === null) return;
  if (row && row.tokens_used >= limit) {
    await noteExceeded(trx, deps, owner, { start: row.period_start, end: row.period_end });
  }
}

/**
 * Charges what a reserved call really used and frees the rest of the hold, recording the usage
 * event, all in one transaction. A call may use more than it reserved (it is charged in full:
 * the tokens were spent). A reservation that expired first is still charged.
 */
export async function settleReservation(deps: Deps, owner: BudgetOwner, id: string, usage: UsageRecord) {
  const charged = usage.promptTokens + usage.completionTokens;
  assertTokens(charged, 'prompt_tokens + completion_tokens');
  const now = deps.clock.now();
  const { key, row } = await transaction(deps.db.kysely, async (trx) => {
    // The common case in one statement: the owner's reservation, still held.
    const closed = await closeReservation(trx, owner.tenantId, id, { status: 'settled', charged, now }, owner.userId);
    let key: BudgetKey;
    let row: BudgetRow | undefined;
    if (closed) {
      key = { tenantId: owner.tenantId, userId: owner.userId, periodStart: closed.period_start };
      row = await addToBudget(trx, key, { reserved: -closed.tokens, used: charged, limit: null, now });
    } else {
      const existing = await findReservation(trx, owner.tenantId, id);
      if (!existing || existing.user_id !== owner.userId) throw notFound('Reservation');
      if (!(await settleExpired(trx, owner.tenantId, id, charged, now))) {
        throw new AppError('conflict', `This reservation is already ${existing.status}`, {
          details: { status: existing.status },
        });
      }
      key = { tenantId: owner.tenantId, userId: owner.userId, periodStart: existing.period_start };
      row = await addToBudget(trx, key, { reserved: 0, used: charged, limit: null, now });
    }
    await checkExhausted(trx, deps, owner, row);
    // Queued the moment the charge commits, so a reader rarely sees the charge without its record.
    afterCommit(trx, () => recordUsage(deps, owner, usage));
    return { key, row };
  });
  forgetBudget(deps, key);
  return budgetAfter(deps, owner, row, now);
}

/** Frees all of a held reservation (the call was never made). */
export async function releaseReservation(deps: Deps, owner: BudgetOwner, id: string) {
  const now = deps.clock.now();
  const { key, row } = await transaction(deps.db.kysely, async (trx) => {
    const existing = await findReservation(trx, owner.tenantId, id);
    if (!existing || existing.user_id !== owner.userId) throw notFound('Reservation');
    const closed = await closeReservation(trx, owner.tenantId, id, { status: 'released', charged: null, now });
    if (!closed) {
      throw new AppError('conflict', `This reservation is already ${existing.status}`, {
        details: { status: existing.status },
      });
    }
    const key = { tenantId: owner.tenantId, userId: owner.userId, periodStart: existing.period_start };
    const row = await addToBudget(trx, key, { reserved: -closed.tokens, used: 0, limit: null, now });
    return { key, row };
  });
  forgetBudget(deps, key);
  return budgetAfter(deps, owner, row, now);
}

/**
 * Charges tokens at once, only if they fit the budget (verify's `credits`): a reservation and its
 * settlement in one step. Returns false, charging nothing, when they do not fit.
 */
export async function chargeTokens(
  deps: Deps,
  owner: BudgetOwner,
  usage: UsageRecord,
): Promise<{ charged: boolean; budget: BudgetView }> {
  const tokens = usage.promptTokens + usage.completionTokens;
  assertTokens(tokens, 'cost');
  const now = deps.clock.now();
  const period = periodAt(owner.limits.tokenPeriod, now);
  const key = keyOf(owner, period);
  const row = await transaction(deps.db.kysely, async (trx) => {
    const taken = await takeFromBudget(trx, deps, owner, period, { reserved: 0, used: tokens });
    if (!taken) return undefined;
    await checkExhausted(trx, deps, owner, taken);
    afterCommit(trx, () => recordUsage(deps, owner, usage));
    return taken;
  });
  forgetBudget(deps, key);
  return { charged: row !== undefined, budget: await budgetAfter(deps, owner, row, now) };
}

/** The sweeper: expires unsettled reservations of everyone, a batch at a time. */
export async function expireReservations(deps: Deps): Promise<number> {
  const holds = await findExpiredHolds(deps.db.kysely, deps.clock.now(), { limit: 500 });
  for (const hold of holds) {
    const changed = await transaction(deps.db.kysely, (trx) => expireHolds(trx, deps, [hold]));
    for (const key of changed) forgetBudget(deps, key);
  }
  return holds.length;
}
