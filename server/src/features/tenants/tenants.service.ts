import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import { transaction } from '../../db/index.js';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField, notFound } from '../../errors.js';
import type { Actor } from '../../http/principal.js';
import { createSecret } from '../../lib/tokens.js';
import { webUrlProblem } from '../../lib/web-urls.js';
import { recordAudit } from '../audit/audit.service.js';
import { createDefaultPlans } from '../plans/plans.service.js';
import {
  findTenant,
  insertTenant,
  listAllTenants,
  listTenants as listTenantRows,
  updateTenant as updateTenantRow,
} from './tenants.repo.js';
import type { EffectiveSettings, Tenant, TenantSettings } from './tenants.types.js';

export const DEFAULT_TENANT_SLUG = 'default';

export function effectiveSettings(config: Config, tenant: Tenant): EffectiveSettings {
  const s = tenant.settings;
  const seconds = (value: number | undefined, fallbackMs: number) => (value !== undefined ? value * 1000 : fallbackMs);
  return {
    // Clamped: lowering MAX_ACCESS_TOKEN_TTL must bind tenants that chose more before.
    accessTtlMs: Math.min(seconds(s.access_token_ttl_seconds, config.tokens.accessTtlMs), config.tokens.maxAccessTtlMs),
    refreshIdleTtlMs: seconds(s.refresh_token_idle_ttl_seconds, config.tokens.refreshIdleTtlMs),
    refreshAbsoluteTtlMs: seconds(s.refresh_token_absolute_ttl_seconds, config.tokens.refreshAbsoluteTtlMs),
    allowedOrigins: s.allowed_origins ?? [],
    allowedRedirectUris: s.allowed_redirect_uris ?? [],
    passwordPolicy: {
      // OWASP ASVS 5.0 V6.2: at least 8 characters, at least 64 allowed, no composition rules.
      minLength: s.password_policy?.min_length ?? 8,
      maxLength: s.password_policy?.max_length ?? 128,
      blockCommon: s.password_policy?.block_common ?? true,
    },
  };
}

/** Rejects settings that contradict each other or the instance limits, naming the field. */
function checkSettings(config: Config, settings: TenantSettings): void {
  const problems: { field: string; message: string }[] = [];
  const access = settings.access_token_ttl_seconds;
  if (access !== undefined && access * 1000 > config.tokens.maxAccessTtlMs) {
    problems.push({
      field: 'settings.access_token_ttl_seconds',
      message: `must be at most ${config.tokens.maxAccessTtlMs / 1000} (MAX_ACCESS_TOKEN_TTL)`,
    });
  }
  const idle = settings.refresh_token_idle_ttl_seconds ?? config.tokens.refreshIdleTtlMs / 1000;
  const absolute = settings.refresh_token_absolute_ttl_seconds ?? config.tokens.refreshAbsoluteTtlMs / 1000;
  if (idle > absolute) {
    problems.push({
      field: 'settings.refresh_token_idle_ttl_seconds',
      message: 'must not exceed the absolute lifetime',
    });
  }
  for (const [name, use] of [
    ['allowed_redirect_uris', 'redirect'],
    ['allowed_origins', 'origin'],
  ] as const) {
    (settings[name] ?? []).forEach((text, index) => {
      const problem = webUrlProblem(text, use);
      if (problem) problems.push({ field: `settings.${name}.${index}`, message: problem });
    });
  }
  const policy = settings.password_policy;
  if (policy?.min_length !== undefined && policy.max_length !== undefined && policy.min_length > policy.max_length) {
    problems.push({ field: 'settings.password_policy.min_length', message: 'must not exceed max_length' });
  }
  if (problems.length > 0) {
    throw new AppError(
      'validation_failed',
      `Invalid settings: ${problems.map((p) => `${p.field} ${p.message}`).join('; ')}`,
      {
        details: { fields: problems.map((p) => ({ ...p, in: 'body' })) },
      },
    );
  }
}

function slugify(name: string): string {
  return name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48);
}

export async function createTenant(
  deps: Deps,
  actor: Actor,
  input: { name: string; slug?: string; settings?: TenantSettings },
): Promise<Tenant> {
  const settings = input.settings ?? {};
  checkSettings(deps.config, settings);
  const slug = input.slug ?? slugify(input.name);
  if (!/^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$/.test(slug)) {
    throw invalidField('slug', 'must match ^[a-z0-9-]+$', {
      summary: 'slug must be 1-48 lowercase letters, digits or dashes',
    });
  }
  const now = deps.clock.now();
  const tenant: Tenant = {
    id: deps.ids.next('ten'),
    slug,
    name: input.name,
    publishableKey: createSecret('pk'),
    settings,
    defaultPlanId: null,
    createdAt: now,
    updatedAt: now,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await insertTenant(trx, tenant);
    // Every tenant starts with the seeds' plans, free being the default.
    tenant.defaultPlanId = await createDefaultPlans(trx, deps, tenant.id);
    await updateTenantRow(trx, tenant.id, { defaultPlanId: tenant.defaultPlanId, updatedAt: now });
    await recordAudit(trx, deps, {
      tenantId: tenant.id,
      action: 'tenant.created',
      actor,
      target: { type: 'tenant', id: tenant.id },
    });
  });
  deps.caches.auth.clear();
  return tenant;
}

/** The tenant that unauthenticated calls without a tenant header belong to; created on first start. */
export async function ensureDefaultTenant(deps: Deps, actor: Actor): Promise<Tenant> {
  const existing = await findTenant(deps.db.kysely, { slug: DEFAULT_TENANT_SLUG });
  if (existing) return existing;
  try {
    return await createTenant(deps, actor, { name: 'Default', slug: DEFAULT_TENANT_SLUG });
  } catch (error) {
    // Another instance starting at the same moment created it first.
    const created = await findTenant(deps.db.kysely, { slug: DEFAULT_TENANT_SLUG });
    if (created) return created;
    throw error;
  }
}

async function cached(deps: Deps, cacheKey: string, load: () => Promise<Tenant | null>): Promise<Tenant | null> {
  return (await deps.caches.auth.read('tenant', cacheKey, async () => (await load()) ?? undefined)) ?? null;
}

export function getTenant(deps: Deps, id: string): Promise<Tenant | null> {
  return cached(deps, `id:${id}`, () => findTenant(deps.db.kysely, { id }));
}

export function getTenantByPublishableKey(deps: Deps, publishableKey: string): Promise<Tenant | null> {
  return cached(deps, `pk:${publishableKey}`, () => findTenant(deps.db.kysely, { publishableKey }));
}

export function getDefaultTenant(deps: Deps): Promise<Tenant | null> {
  return cached(deps, 'default', () => findTenant(deps.db.kysely, { slug: DEFAULT_TENANT_SLUG }));
}

export async function requireTenant(deps: Deps, id: string): Promise<Tenant> {
  const tenant = await getTenant(deps, id);
  if (!tenant) throw notFound('Tenant');
  return tenant;
}

export async function listTenants(deps: Deps, page: { after?: string; limit: number }) {
  const rows = await listTenantRows(deps.db.kysely, { after: page.after, limit: page.limit + 1 });
  const data = rows.slice(0, page.limit);
  return { data, nextCursor: rows.length > page.limit ? (data.at(-1)?.id ?? null) : null };
}

/** Merges `settings` into the stored overrides (a field set to null returns to the default). */
export async function updateTenant(
  deps: Deps,
  actor: Actor,
  id: string,
  input: { name?: string; settings?: Record<string, unknown> },
): Promise<Tenant> {
  const updatedAt = deps.clock.now();
  // Read, merge and write in one transaction, from the database rather than the cache, so that
  // two concurrent changes to different settings both survive (the row is locked on PostgreSQL).
  const updated = await transaction(deps.db.kysely, async (trx) => {
    const tenant = await findTenant(trx, { id }, { lock: deps.db.dialect });
    if (!tenant) throw notFound('Tenant');
    const merged = { ...tenant.settings } as Record<string, unknown>;
    for (const [key, value] of Object.entries(input.settings ?? {})) {
      if (value === null) delete merged[key];
      else if (key === 'password_policy' && typeof value === 'object')
        merged[key] = { ...tenant.settings.password_policy, ...value };
      else merged[key] = value;
    }
    const settings = merged as TenantSettings;
    checkSettings(deps.config, settings);
    await updateTenantRow(trx, id, { name: input.name, settings, updatedAt });
    await recordAudit(trx, deps, {
      tenantId: id,
      action: 'tenant.updated',
      actor,
      target: { type: 'tenant', id },
      data: { fields: Object.keys(input) },
    });
    return { ...tenant, name: input.name ?? tenant.name, settings, updatedAt };
  });
  deps.caches.auth.clear();
  return updated;
}

/** Makes a plan the tenant's default, on the caller's transaction (the plans feature owns plans). */
export async function setDefaultPlan(
  trx: Kysely<Database>,
  deps: Deps,
  tenantId: string,
  planId: string,
): Promise<void> {
  await updateTenantRow(trx, tenantId, { defaultPlanId: planId, updatedAt: deps.clock.now() });
}

export interface OriginIndex {
  /** Every origin any tenant allows (for preflights, which name no tenant). */
  all: Set<string>;
  byTenantId: Map<string, Set<string>>;
  tenantIdByPublishableKey: Map<string, string>;
  defaultTenantId: string | undefined;
}

/** Every tenant's CORS allow-list, through the read cache (rebuilt after any tenant change). */
export async function listAllowedOrigins(deps: Deps): Promise<OriginIndex> {
  const index = await deps.caches.auth.read('origins', 'all', async () => {
    const built: OriginIndex = {
      all: new Set(),
      byTenantId: new Map(),
      tenantIdByPublishableKey: new Map(),
      defaultTenantId: undefined,
    };
    for (const tenant of await listAllTenants(deps.db.kysely)) {
      const origins = new Set(effectiveSettings(deps.config, tenant).allowedOrigins);
      built.byTenantId.set(tenant.id, origins);
      built.tenantIdByPublishableKey.set(tenant.publishableKey, tenant.id);
      if (tenant.slug === DEFAULT_TENANT_SLUG) built.defaultTenantId = tenant.id;
      for (const origin of origins) built.all.add(origin);
    }
    return built;
  });
  if (!index) throw new Error('origin index missing');
  return index;
}
