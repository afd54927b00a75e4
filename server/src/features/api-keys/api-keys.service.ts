import type { Kysely } from 'kysely';
import type { ResolvedPrincipal } from '../../auth-cache.js';
import { json, transaction } from '../../db/index.js';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField, notFound } from '../../errors.js';
import type { ClientInfo, UserPrincipal } from '../../http/principal.js';
import { API_KEY_PREFIX } from '../../lib/key-prefixes.js';
import { createSecret, hasValidChecksum, sha256, visibleStart } from '../../lib/tokens.js';
import { recordAudit } from '../audit/audit.service.js';
import { emitEvent } from '../events/events.service.js';
import { limitsOf } from '../plans/plans.service.js';
import { type BudgetOwner, budgetOf, chargeTokens } from '../usage/budget.service.js';
import { hitLimits, type LimitSpec, type LimitState, peekLimits, requestLimitSpecs } from '../usage/rate-limits.js';
import {
  type ApiKeyRow,
  countLiveApiKeys,
  findApiKey,
  findApiKeyByHash,
  insertApiKey,
  listApiKeys as listRows,
  markRotated,
  revokeApiKeyRow,
} from './api-keys.repo.js';

/** Hourly limits a key may carry, tighter than its owner's plan (null: the plan's). */
export interface KeyLimits {
  requests_per_hour: number | null;
  llm_requests_per_hour: number | null;
}

export const PRIMARY_KEY_NAME = 'Primary API Key';

/**
 * Live keys a user may hold. A person needs a handful (one per device or app, plus one in a
 * rotation overlap); each is listed unpaginated and kept in the credential cache, so the number
 * is bounded. Unkey sets no such cap because its keys belong to an app's workspace, not to the
 * app's end users, who here create keys themselves.
 */
export const MAX_LIVE_KEYS_PER_USER = 100;

/** 409 when the user already holds `MAX_LIVE_KEYS_PER_USER` live keys (`replacing`: a key being rotated, not counted). */
async function checkKeyCap(deps: Deps, principal: UserPrincipal, options: { replacing?: string } = {}) {
  const live = await countLiveApiKeys(deps.db.kysely, principal.tenantId, principal.userId, deps.clock.now());
  // Soft under concurrency (two creates at 99 may both pass): a bound on resources, not an invariant.
  if (live - (options.replacing ? 1 : 0) >= MAX_LIVE_KEYS_PER_USER) {
    throw new AppError(
      'resource_limit_reached',
      `A user may hold at most ${MAX_LIVE_KEYS_PER_USER} live API keys; revoke one first`,
      { details: { resource: 'api_keys', limit: MAX_LIVE_KEYS_PER_USER } },
    );
  }
}

export function presentApiKey(row: ApiKeyRow) {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    id: row.id,
    name: row.name,
    start: row.start,
    scopes: json.read<string[]>(row.scopes, []),
    created_at: new Date(row.created_at).toISOString(),
    last_used_at: iso(row.last_used_at),
    expires_at: iso(row.expires_at),
    requests_per_hour: row.requests_per_hour,
    llm_requests_per_hour: row.llm_requests_per_hour,
  };
}

/** Creates a key on the caller's transaction; the plaintext is returned here and never again. */
export async function createApiKey(
  trx: Kysely<Database>,
  deps: Deps,
  input: {
    tenantId: string;
    userId: string;
    name: string;
    scopes: string[];
    expiresAt: number | null;
    limits?: KeyLimits;
    client: ClientInfo;
  },
): Promise<{ row: ApiKeyRow; key: string }> {
  const key = createSecret(API_KEY_PREFIX);
  const row: ApiKeyRow = {
    id: deps.ids.next('key'),
    tenant_id: input.tenantId,
    user_id: input.userId,
    name: input.name,
    start: visibleStart(key),
    key_hash: sha256(key),
    scopes: json.write([...new Set(input.scopes)]),
    created_at: deps.clock.now(),
    last_used_at: null,
    expires_at: input.expiresAt,
    revoked_at: null,
    rotated_to: null,
    requests_per_hour: input.limits?.requests_per_hour ?? null,
    llm_requests_per_hour: input.limits?.llm_requests_per_hour ?? null,
  };
  await insertApiKey(trx, row);
  await recordAudit(trx, deps, {
    tenantId: input.tenantId,
    action: 'api_key.created',
    actor: { type: 'user', id: input.userId },
    target: { type: 'api_key', id: row.id },
    client: input.client,
    data: { name: input.name },
  });
  await emitEvent(trx, deps, {
    tenantId: input.tenantId,
    type: 'api_key.created',
    data: { api_key_id: row.id, user_id: input.userId, name: input.name },
  });
  return { row, key };
}

export async function createUserApiKey(
  deps: Deps,
  principal: UserPrincipal,
  input: { name: string; scopes?: string[]; expires_in?: number } & Partial<KeyLimits>,
  client: ClientInfo,
) {
  await checkKeyCap(deps, principal);
  const expiresAt = input.expires_in === undefined ? null : deps.clock.now() + input.expires_in * 1000;
  const { row, key } = await transaction(deps.db.kysely, (trx) =>
    createApiKey(trx, deps, {
      tenantId: principal.tenantId,
      userId: principal.userId,
      name: input.name,
      scopes: input.scopes ?? [],
      expiresAt,
      limits: {
        requests_per_hour: input.requests_per_hour ?? null,
        llm_requests_per_hour: input.llm_requests_per_hour ?? null,
      },
      client,
    }),
  );
  return { ...presentApiKey(row), key };
}

export async function listApiKeys(deps: Deps, principal: UserPrincipal) {
  const now = deps.clock.now();
  const rows = await listRows(deps.db.kysely, principal.tenantId, principal.userId);
  return rows.filter((row) => row.expires_at === null || row.expires_at > now).map(presentApiKey);
}

async function ownKey(deps: Deps, principal: UserPrincipal, id: string): Promise<ApiKeyRow> {
  const row = await findApiKey(deps.db.kysely, principal.tenantId, principal.userId, id);
  if (!row || row.revoked_at !== null) throw notFound('API key');
  return row;
}

export async function revokeApiKey(deps: Deps, principal: UserPrincipal, id: string, client: ClientInfo) {
  await ownKey(deps, principal, id);
  await transaction(deps.db.kysely, async (trx) => {
    await revokeApiKeyRow(trx, principal.tenantId, id, deps.clock.now());
    await recordAudit(trx, deps, {
      tenantId: principal.tenantId,
      action: 'api_key.revoked',
      actor: { type: 'user', id: principal.userId },
      target: { type: 'api_key', id },
      client,
    });
    await emitEvent(trx, deps, {
      tenantId: principal.tenantId,
      type: 'api_key.revoked',
      data: { api_key_id: id, user_id: principal.userId },
    });
  });
  deps.caches.auth.clear();
}

/**
 * Issues a new secret for a key (Unkey's reroll): the new key inherits name, scopes and expiry;
 * the old one keeps working for the overlap so deployed clients can switch without downtime.
 */
export async function rotateApiKey(
  deps: Deps,
  principal: UserPrincipal,
  id: string,
  input: { overlap_seconds?: number },
  client: ClientInfo,
) {
  const old = await ownKey(deps, principal, id);
  const now = deps.clock.now();
  if (old.expires_at !== null && old.expires_at <= now) throw notFound('API key');
  if (old.rotated_to !== null) {
    // Its expiry is now the end of the overlap, not the key's own: rotate the successor instead.
    throw new AppError('conflict', `This key was already rotated; rotate ${old.rotated_to} instead`, {
      details: { successor_id: old.rotated_to },
    });
  }
  await checkKeyCap(deps, principal, { replacing: id });
  const overlapMs =
    input.overlap_seconds === undefined ? deps.config.apiKeys.rotationOverlapMs : input.overlap_seconds * 1000;
  const oldEnds = Math.min(now + overlapMs, old.expires_at ?? Number.MAX_SAFE_INTEGER);
  const result = await transaction(deps.db.kysely, async (trx) => {
    const created = await createApiKey(trx, deps, {
      tenantId: principal.tenantId,
      userId: principal.userId,
      name: old.name,
      scopes: json.read<string[]>(old.scopes, []),
      expiresAt: old.expires_at,
      limits: old,
      client,
    });
    // Conditional, so that of two concurrent rotations only one links a successor (the other rolls back).
    if (!(await markRotated(trx, principal.tenantId, id, { expiresAt: oldEnds, successorId: created.row.id }))) {
      throw new AppError('conflict', 'This key was rotated at the same moment; list your keys and rotate the new one');
    }
    await recordAudit(trx, deps, {
      tenantId: principal.tenantId,
      action: 'api_key.rotated',
      actor: { type: 'user', id: principal.userId },
      target: { type: 'api_key', id },
      client,
      data: { new_key_id: created.row.id, old_key_expires_at: new Date(oldEnds).toISOString() },
    });
    return created;
  });
  deps.caches.auth.clear();
  return { ...presentApiKey(result.row), key: result.key, previous_key_expires_at: new Date(oldEnds).toISOString() };
}

export type VerifyCode = 'VALID' | 'NOT_FOUND' | 'EXPIRED' | 'REVOKED' | 'DISABLED';

export interface KeyCheck {
  code: VerifyCode;
  row?: ApiKeyRow & {
    role: 'user' | 'admin' | 'operator';
    user_disabled_at: number | null;
    user_plan_id: string | null;
  };
}

/** Checks a presented key: format and checksum first (no database work for typos), then the hash. */
export async function checkApiKey(deps: Deps, key: string, tenantId?: string): Promise<KeyCheck> {
  if (!hasValidChecksum(key, API_KEY_PREFIX)) return { code: 'NOT_FOUND' };
  const hash = sha256(key);
  const row = await deps.caches.auth.read('api_key', hash, () => findApiKeyByHash(deps.db.kysely, hash));
  if (!row || (tenantId !== undefined && row.tenant_id !== tenantId)) return { code: 'NOT_FOUND' };
  if (row.revoked_at !== null) return { code: 'REVOKED', row };
  if (row.expires_at !== null && row.expires_at <= deps.clock.now()) return { code: 'EXPIRED', row };
  if (row.user_disabled_at !== null) return { code: 'DISABLED', row };
  deps.lastUsed.mark('api_keys', row.id, deps.clock.now());
  return { code: 'VALID', row };
}

export async function resolveApiKeyPrincipal(deps: Deps, key: string): Promise<ResolvedPrincipal | null> {
  const { code, row } = await checkApiKey(deps, key);
  if (code !== 'VALID' || !row) return null;
  return {
    principal: {
      kind: 'user',
      tenantId: row.tenant_id,
      userId: row.user_id,
      role: row.role,
      sessionId: null,
      apiKeyId: row.id,
      limits: await limitsOf(deps, row.tenant_id, row.user_plan_id, row),
    },
    validUntil: row.expires_at ?? Number.POSITIVE_INFINITY,
  };
}

export type VerifyOutcome = VerifyCode | 'RATE_LIMITED' | 'USAGE_EXCEEDED';

/** A limit an app backend asks verify to count (Unkey's `ratelimits`). */
export interface VerifyRatelimit {
  name: string;
  cost?: number;
  /** For the app's own named limits; `requests` and `llm_requests` are the plan's and key's. */
  limit?: number;
  /** Window in ms (whole seconds), with `limit`. */
  duration?: number;
}

const PLAN_LIMITS = ['requests', 'llm_requests'] as const;

function verifyLimitSpecs(owner: BudgetOwner, ratelimits: VerifyRatelimit[]): LimitSpec[] {
  return ratelimits.flatMap((r, i) => {
    const field = (name: string, message: string) => invalidField(`ratelimits.${i}.${name}`, message);
    const builtIn = (PLAN_LIMITS as readonly string[]).includes(r.name);
    if (builtIn) {
      if (r.limit !== undefined || r.duration !== undefined) {
        throw field('limit', `must be omitted: the ${r.name} limit comes from the user's plan and key`);
      }
      return requestLimitSpecs(owner, r.name as (typeof PLAN_LIMITS)[number]).map((spec) => ({
        ...spec,
        cost: r.cost,
      }));
    }
    if (r.limit === undefined) throw field('limit', `is required for the app's own limit "${r.name}"`);
    if (r.duration === undefined || r.duration % 1000 !== 0) {
      throw field('duration', 'is required with limit: the window in milliseconds, whole seconds');
    }
    return [
      {
        name: r.name,
        subject: `app:${r.name}:${owner.tenantId}:${owner.userId}`,
        limit: r.limit,
        windowSeconds: r.duration / 1000,
        cost: r.cost,
      },
    ];
  });
}

/**
 * Unkey-style verification for app backends: the outcome is data, never an error. Optionally
 * counts named limits (`ratelimits`: the plan's `requests` / `llm_requests`, or the app's own with
 * `limit` and `duration`) and charges `credits.cost` tokens to the user's budget; then the answer is
 * RATE_LIMITED or USAGE_EXCEEDED with what remains. Credits are charged only when no limit is exceeded.
 */
export async function verifyApiKey(
  deps: Deps,
  tenantId: string,
  input: { key: string; ratelimits?: VerifyRatelimit[]; credits?: { cost: number } },
) {
  const { code, row } = await checkApiKey(deps, input.key, tenantId);
  const base = {
    key_id: row?.id ?? null,
    user_id: row?.user_id ?? null,
    tenant_id: tenantId,
    scopes: row ? json.read<string[]>(row.scopes, []) : [],
    expires_at: row?.expires_at ? new Date(row.expires_at).toISOString() : null,
  };
  if (code !== 'VALID' || !row || (!input.ratelimits && !input.credits)) {
    return { valid: code === 'VALID', code: code as VerifyOutcome, ...base };
  }
  const owner: BudgetOwner = {
    tenantId,
    userId: row.user_id,
    apiKeyId: row.id,
    limits: await limitsOf(deps, tenantId, row.user_plan_id, row),
  };
  let outcome: VerifyOutcome = 'VALID';
  let ratelimits: LimitState[] | undefined;
  if (input.ratelimits) {
    const specs = verifyLimitSpecs(owner, input.ratelimits);
    const [counted, peeked] = await Promise.all([
      hitLimits(
        deps,
        specs.filter((s) => s.cost !== 0),
      ),
      peekLimits(
        deps,
        specs.filter((s) => s.cost === 0),
      ),
    ]);
    ratelimits = [...counted, ...peeked];
    if (ratelimits.some((s) => s.exceeded)) outcome = 'RATE_LIMITED';
  }
  let credits: { cost: number; remaining: number | null; limit: number | null } | undefined;
  if (input.credits) {
    const { cost } = input.credits;
    const budget =
      outcome === 'VALID' && cost > 0
        ? await chargeTokens(deps, owner, { kind: 'credits', promptTokens: cost, completionTokens: 0, status: 'ok' })
        : { charged: true, budget: await budgetOf(deps, owner) };
    if (!budget.charged) outcome = 'USAGE_EXCEEDED';
    credits = { cost, remaining: budget.budget.remaining, limit: budget.budget.limit };
  }
  return {
    valid: outcome === 'VALID',
    code: outcome,
    ...base,
    ...(ratelimits && {
      ratelimits: ratelimits.map((s) => ({
        name: s.name,
        limit: s.limit,
        remaining: s.remaining,
        reset: new Date(s.resetAt).toISOString(),
        exceeded: s.exceeded,
      })),
    }),
    ...(credits && { credits }),
  };
}
