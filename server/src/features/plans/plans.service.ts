import type { Kysely } from 'kysely';
import { json, transaction } from '../../db/index.js';
import type { Database, TokenPeriod } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField, notFound } from '../../errors.js';
import type { Actor, ClientInfo, UserLimits } from '../../http/principal.js';
import { requireUser } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import { requireTenant, setDefaultPlan } from '../tenants/tenants.service.js';
import {
  countUsersOnPlan,
  deletePlanRow,
  findPlan,
  insertPlan,
  listPlanRows,
  type PlanRow,
  setUserPlan,
  updatePlanRow,
} from './plans.repo.js';

export interface PlanLimits {
  requests_per_hour: number | null;
  llm_requests_per_hour: number | null;
  max_tokens_per_request: number | null;
  max_prompt_tokens_per_request: number | null;
  tokens_per_month: number | null;
  token_period: TokenPeriod;
  /** Public model names the plan may call (a trailing * matches a prefix); null: every model. */
  allowed_models: string[] | null;
}

/**
 * The seeds' tiers (seeds 000 and 001; DESIGN capability 3), created with every tenant; free is the
 * default. Migration 0002 keeps its own copy on purpose: a landed migration must not change when this does.
 */
export const DEFAULT_PLANS: ({ name: string } & Omit<PlanLimits, 'allowed_models'>)[] = [
  {
    name: 'free',
    requests_per_hour: 100,
    llm_requests_per_hour: 50,
    max_tokens_per_request: 1_000,
    max_prompt_tokens_per_request: 4_000,
    tokens_per_month: 10_000,
    token_period: 'month',
  },
  {
    name: 'pro',
    requests_per_hour: 1_000,
    llm_requests_per_hour: 500,
    max_tokens_per_request: 4_000,
    max_prompt_tokens_per_request: 32_000,
    tokens_per_month: 100_000,
    token_period: 'month',
  },
  {
    name: 'enterprise',
    requests_per_hour: 10_000,
    llm_requests_per_hour: 5_000,
    max_tokens_per_request: 8_000,
    max_prompt_tokens_per_request: 128_000,
    tokens_per_month: 1_000_000,
    token_period: 'month',
  },
];

/** The stored allow-list: distinct names, or null for every model. */
function modelList(models: string[] | null | undefined): string | null {
  return models == null ? null : json.write([...new Set(models)]);
}

export function presentPlan(row: PlanRow, defaultPlanId: string | null) {
  return {
    id: row.id,
    name: row.name,
    requests_per_hour: row.requests_per_hour,
    llm_requests_per_hour: row.llm_requests_per_hour,
    max_tokens_per_request: row.max_tokens_per_request,
    max_prompt_tokens_per_request: row.max_prompt_tokens_per_request,
    tokens_per_month: row.tokens_per_month,
    token_period: row.token_period,
    allowed_models: json.read<string[] | null>(row.allowed_models, null),
    default: row.id === defaultPlanId,
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

/** Inserts the default plans for a new tenant on the caller's transaction; returns the default (free) plan id. */
export async function createDefaultPlans(trx: Kysely<Database>, deps: Deps, tenantId: string): Promise<string> {
  const now = deps.clock.now();
  let freeId = '';
  for (const plan of DEFAULT_PLANS) {
    const id = deps.ids.next('pln');
    await insertPlan(trx, { id, tenant_id: tenantId, ...plan, allowed_models: null, created_at: now, updated_at: now });
    if (plan.name === 'free') freeId = id;
  }
  return freeId;
}

export async function listPlans(deps: Deps, tenantId: string) {
  const tenant = await requireTenant(deps, tenantId);
  return (await listPlanRows(deps.db.kysely, tenantId)).map((row) => presentPlan(row, tenant.defaultPlanId));
}

async function requirePlan(deps: Deps, tenantId: string, idOrName: string): Promise<PlanRow> {
  const plan = await findPlan(deps.db.kysely, tenantId, idOrName);
  if (!plan) throw notFound('Plan');
  return plan;
}

export async function getPlan(deps: Deps, tenantId: string, id: string) {
  const tenant = await requireTenant(deps, tenantId);
  return presentPlan(await requirePlan(deps, tenantId, id), tenant.defaultPlanId);
}

export async function createPlan(
  deps: Deps,
  tenantId: string,
  input: { name: string; default?: boolean } & Partial<PlanLimits>,
  actor: Actor,
  client: ClientInfo,
) {
  const now = deps.clock.now();
  const row: PlanRow = {
    id: deps.ids.next('pln'),
    tenant_id: tenantId,
    name: input.name,
    requests_per_hour: input.requests_per_hour ?? null,
    llm_requests_per_hour: input.llm_requests_per_hour ?? null,
    max_tokens_per_request: input.max_tokens_per_request ?? null,
    max_prompt_tokens_per_request: input.max_prompt_tokens_per_request ?? null,
    tokens_per_month: input.tokens_per_month ?? null,
    token_period: input.token_period ?? 'month',
    allowed_models: modelList(input.allowed_models),
    created_at: now,
    updated_at: now,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await insertPlan(trx, row);
    if (input.default) await setDefaultPlan(trx, deps, tenantId, row.id);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'plan.created',
      actor,
      target: { type: 'plan', id: row.id },
      client,
      data: { name: row.name },
    });
  });
  deps.caches.auth.clear();
  return getPlan(deps, tenantId, row.id);
}

/** Changes limits or the name; a limit set to null means unlimited. `default: true` makes it the tenant's default. */
export async function updatePlan(
  deps: Deps,
  tenantId: string,
  id: string,
  input: { name?: string; default?: boolean } & Partial<PlanLimits>,
  actor: Actor,
  client: ClientInfo,
) {
  const plan = await requirePlan(deps, tenantId, id);
  const { default: makeDefault, allowed_models: models, ...limits } = input;
  const changes = { ...limits, ...(models !== undefined && { allowed_models: modelList(models) }) };
  if (makeDefault === false) {
    throw invalidField('default', 'can only be set to true', {
      summary: 'A tenant always has a default plan: make another plan the default instead',
    });
  }
  await transaction(deps.db.kysely, async (trx) => {
    await updatePlanRow(trx, tenantId, plan.id, { ...changes, updated_at: deps.clock.now() });
    if (makeDefault) await setDefaultPlan(trx, deps, tenantId, plan.id);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'plan.updated',
      actor,
      target: { type: 'plan', id: plan.id },
      client,
      data: { fields: Object.keys(input) },
    });
  });
  deps.caches.auth.clear();
  return getPlan(deps, tenantId, plan.id);
}

export async function deletePlan(deps: Deps, tenantId: string, id: string, actor: Actor, client: ClientInfo) {
  const tenant = await requireTenant(deps, tenantId);
  const plan = await requirePlan(deps, tenantId, id);
  if (plan.id === tenant.defaultPlanId)
    throw new AppError('conflict', 'The default plan cannot be deleted; make another plan the default first');
  await transaction(deps.db.kysely, async (trx) => {
    const users = await countUsersOnPlan(trx, tenantId, plan.id);
    if (users > 0) {
      throw new AppError('conflict', `${users} user(s) are on this plan; move them to another plan first`, {
        details: { users },
      });
    }
    await deletePlanRow(trx, tenantId, plan.id);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'plan.deleted',
      actor,
      target: { type: 'plan', id: plan.id },
      client,
      data: { name: plan.name },
    });
  });
  deps.caches.auth.clear();
}

/** Puts a user on a plan (by id or name); `null` returns them to the tenant's default plan. */
export async function assignPlan(
  deps: Deps,
  tenantId: string,
  userId: string,
  planIdOrName: string | null,
  actor: Actor,
  client: ClientInfo,
) {
  const user = await requireUser(deps, tenantId, userId);
  const plan = planIdOrName === null ? null : await requirePlan(deps, tenantId, planIdOrName);
  await transaction(deps.db.kysely, async (trx) => {
    await setUserPlan(trx, tenantId, userId, plan?.id ?? null, deps.clock.now());
    await recordAudit(trx, deps, {
      tenantId,
      action: 'user.plan_changed',
      actor,
      target: { type: 'user', id: userId },
      client,
      data: { plan: plan?.name ?? null, previous_plan_id: user.plan_id },
    });
  });
  deps.caches.auth.clear();
  return planOfUser(deps, tenantId, { ...user, plan_id: plan?.id ?? null });
}

/** The plan that applies to a user: their own, else the tenant's default. */
export async function planOfUser(deps: Deps, tenantId: string, user: { plan_id: string | null }) {
  const { plan, defaultPlanId } = await planRowOfUser(deps, tenantId, user.plan_id);
  return presentPlan(plan, defaultPlanId);
}

async function planRowOfUser(deps: Deps, tenantId: string, userPlanId: string | null) {
  const tenant = await requireTenant(deps, tenantId);
  const planId = userPlanId ?? tenant.defaultPlanId;
  if (!planId) throw new AppError('internal_error', 'The tenant has no default plan');
  const plan = await deps.caches.auth.read('plan', `${tenantId}:${planId}`, () =>
    findPlan(deps.db.kysely, tenantId, planId),
  );
  if (!plan) throw new AppError('internal_error', 'The user’s plan is missing');
  return { plan, defaultPlanId: tenant.defaultPlanId };
}

/** A user's limits: their plan's, and the presenting key's own hourly limits when it has any. */
export async function limitsOf(
  deps: Deps,
  tenantId: string,
  userPlanId: string | null,
  key?: { requests_per_hour: number | null; llm_requests_per_hour: number | null },
): Promise<UserLimits> {
  const { plan } = await planRowOfUser(deps, tenantId, userPlanId);
  return {
    plan: plan.name,
    requestsPerHour: plan.requests_per_hour,
    llmRequestsPerHour: plan.llm_requests_per_hour,
    maxTokensPerRequest: plan.max_tokens_per_request,
    maxPromptTokensPerRequest: plan.max_prompt_tokens_per_request,
    tokenBudget: plan.tokens_per_month,
    tokenPeriod: plan.token_period,
    allowedModels: json.read<string[] | null>(plan.allowed_models, null),
    key:
      key && (key.requests_per_hour !== null || key.llm_requests_per_hour !== null)
        ? { requestsPerHour: key.requests_per_hour, llmRequestsPerHour: key.llm_requests_per_hour }
        : null,
  };
}
