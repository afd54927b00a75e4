import { json, transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { invalidField, notFound } from '../../errors.js';
import type { Actor, ClientInfo } from '../../http/principal.js';
import { recordAudit } from '../audit/audit.service.js';
import { DEFAULT_CACHE, forgetGatewayConfig, type RouteTarget } from './gateway-config.js';
import { listProviderRows, type ProviderRow } from './providers.repo.js';
import {
  deletePriceRow,
  deleteRouteRow,
  findRoute,
  findSettings,
  insertRoute,
  listPriceRows,
  listRouteRows,
  type PriceRow,
  type RouteRow,
  updateRouteRow,
  upsertPrice,
  upsertSettings,
} from './routing.repo.js';

// The tenant's routing table, price table and gateway settings (admin API). Every change is
// audited and drops the tenant's cached gateway setup, so the next call on this instance uses it.

export interface TargetInput {
  /** A provider's name or id. */
  provider: string;
  /** The provider's id for the model; the route's public name when omitted. */
  model?: string;
}

function presentRoute(row: RouteRow, providers: ProviderRow[]) {
  const byId = new Map(providers.map((p) => [p.id, p]));
  return {
    id: row.id,
    model: row.model,
    targets: json.read<RouteTarget[]>(row.targets, []).map((target) => ({
      provider: byId.get(target.provider_id)?.name ?? null,
      provider_id: target.provider_id,
      model: target.model,
    })),
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

/** Each target's provider, by name or id, must be this tenant's; a provider appears once. */
function resolveTargets(providers: ProviderRow[], publicModel: string, targets: TargetInput[]): RouteTarget[] {
  const seen = new Set<string>();
  return targets.map((target, index) => {
    const provider = providers.find((p) => p.name === target.provider || p.id === target.provider);
    if (!provider) {
      throw invalidField(`targets.${index}.provider`, `names no provider of this tenant ("${target.provider}")`);
    }
    const model = target.model ?? publicModel;
    const key = `${provider.id}\n${model}`;
    if (seen.has(key)) throw invalidField(`targets.${index}`, `repeats ${provider.name} with ${model}`);
    seen.add(key);
    return { provider_id: provider.id, model };
  });
}

export async function listRoutes(deps: Deps, tenantId: string) {
  const db = deps.db.kysely;
  const [rows, providers] = await Promise.all([listRouteRows(db, tenantId), listProviderRows(db, tenantId)]);
  return rows.map((row) => presentRoute(row, providers));
}

async function requireRoute(deps: Deps, tenantId: string, id: string): Promise<RouteRow> {
  const row = await findRoute(deps.db.kysely, tenantId, id);
  if (!row) throw notFound('Route');
  return row;
}

export async function getRoute(deps: Deps, tenantId: string, id: string) {
  const row = await requireRoute(deps, tenantId, id);
  return presentRoute(row, await listProviderRows(deps.db.kysely, tenantId));
}

export async function createRoute(
  deps: Deps,
  tenantId: string,
  input: { model: string; targets: TargetInput[] },
  actor: Actor,
  client: ClientInfo,
) {
  const providers = await listProviderRows(deps.db.kysely, tenantId);
  const now = deps.clock.now();
  const row: RouteRow = {
    id: deps.ids.next('rte'),
    tenant_id: tenantId,
    model: input.model,
    targets: json.write(resolveTargets(providers, input.model, input.targets)),
    created_at: now,
    updated_at: now,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await insertRoute(trx, row);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_route.created',
      actor,
      target: { type: 'llm_route', id: row.id },
      client,
      data: { model: row.model, targets: json.read(row.targets, []) },
    });
  });
  forgetGatewayConfig(deps, tenantId);
  return presentRoute(row, providers);
}

export async function updateRoute(
  deps: Deps,
  tenantId: string,
  id: string,
  input: { model?: string; targets?: TargetInput[] },
  actor: Actor,
  client: ClientInfo,
) {
  const row = await requireRoute(deps, tenantId, id);
  const providers = await listProviderRows(deps.db.kysely, tenantId);
  const model = input.model ?? row.model;
  const changes: Partial<RouteRow> = { updated_at: deps.clock.now() };
  if (input.model !== undefined) changes.model = input.model;
  if (input.targets !== undefined) changes.targets = json.write(resolveTargets(providers, model, input.targets));
  await transaction(deps.db.kysely, async (trx) => {
    await updateRouteRow(trx, tenantId, id, changes);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_route.updated',
      actor,
      target: { type: 'llm_route', id },
      client,
      data: { model, ...(changes.targets && { targets: json.read(changes.targets, []) }) },
    });
  });
  forgetGatewayConfig(deps, tenantId);
  return presentRoute({ ...row, ...changes }, providers);
}

export async function deleteRoute(deps: Deps, tenantId: string, id: string, actor: Actor, client: ClientInfo) {
  const row = await requireRoute(deps, tenantId, id);
  await transaction(deps.db.kysely, async (trx) => {
    await deleteRouteRow(trx, tenantId, id);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_route.deleted',
      actor,
      target: { type: 'llm_route', id },
      client,
      data: { model: row.model },
    });
  });
  forgetGatewayConfig(deps, tenantId);
}

const MICROS = 1_000_000;

function presentPrice(row: PriceRow) {
  return {
    model: row.model,
    input_usd_per_million: row.input_micros / MICROS,
    output_usd_per_million: row.output_micros / MICROS,
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

export async function listPrices(deps: Deps, tenantId: string) {
  return (await listPriceRows(deps.db.kysely, tenantId)).map(presentPrice);
}

/** Sets one model's price (USD per million tokens, kept to the micro-dollar). */
export async function setPrice(
  deps: Deps,
  tenantId: string,
  input: { model: string; input_usd_per_million: number; output_usd_per_million: number },
  actor: Actor,
  client: ClientInfo,
) {
  const row: PriceRow = {
    tenant_id: tenantId,
    model: input.model,
    input_micros: Math.round(input.input_usd_per_million * MICROS),
    output_micros: Math.round(input.output_usd_per_million * MICROS),
    updated_at: deps.clock.now(),
  };
  await transaction(deps.db.kysely, async (trx) => {
    await upsertPrice(trx, row);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_price.set',
      actor,
      target: { type: 'llm_price', id: row.model },
      client,
      data: {
        input_usd_per_million: input.input_usd_per_million,
        output_usd_per_million: input.output_usd_per_million,
      },
    });
  });
  forgetGatewayConfig(deps, tenantId);
  return presentPrice(row);
}

export async function deletePrice(deps: Deps, tenantId: string, model: string, actor: Actor, client: ClientInfo) {
  await transaction(deps.db.kysely, async (trx) => {
    if (!(await deletePriceRow(trx, tenantId, model))) throw notFound('Price');
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_price.deleted',
      actor,
      target: { type: 'llm_price', id: model },
      client,
      data: {},
    });
  });
  forgetGatewayConfig(deps, tenantId);
}

export interface SettingsInput {
  cache_enabled?: boolean;
  cache_ttl_seconds?: number;
  cache_charge?: 'tokens' | 'free';
}

export async function getSettings(deps: Deps, tenantId: string) {
  const row = await findSettings(deps.db.kysely, tenantId);
  return {
    cache_enabled: row ? row.cache_enabled === 1 : DEFAULT_CACHE.enabled,
    cache_ttl_seconds: row?.cache_ttl_seconds ?? DEFAULT_CACHE.ttlSeconds,
    cache_charge: row?.cache_charge ?? DEFAULT_CACHE.charge,
  };
}

export async function updateSettings(
  deps: Deps,
  tenantId: string,
  input: SettingsInput,
  actor: Actor,
  client: ClientInfo,
) {
  const next = { ...(await getSettings(deps, tenantId)), ...input };
  await transaction(deps.db.kysely, async (trx) => {
    await upsertSettings(trx, {
      tenant_id: tenantId,
      cache_enabled: next.cache_enabled ? 1 : 0,
      cache_ttl_seconds: next.cache_ttl_seconds,
      cache_charge: next.cache_charge,
      updated_at: deps.clock.now(),
    });
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_settings.updated',
      actor,
      target: { type: 'tenant', id: tenantId },
      client,
      data: { ...input },
    });
  });
  forgetGatewayConfig(deps, tenantId);
  return next;
}
