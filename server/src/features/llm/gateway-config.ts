import { json } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { listProviderRows, type ProviderRow } from './providers.repo.js';
import { providerKey } from './providers.service.js';
import { findSettings, listPriceRows, listRouteRows } from './routing.repo.js';

/** One place a model can be served: a provider and the model id it knows it by. */
export interface Target {
  provider: ProviderRow;
  model: string;
}

export interface Price {
  /** Micro-dollars per million tokens. */
  input: number;
  output: number;
}

export interface CacheSettings {
  enabled: boolean;
  ttlSeconds: number;
  /** 'tokens': a cached answer is charged like the call it repeats; 'free': not charged. */
  charge: 'tokens' | 'free';
}

export const DEFAULT_CACHE: CacheSettings = { enabled: false, ttlSeconds: 300, charge: 'tokens' };

/** What a call needs of a tenant's gateway setup, read once per AUTH_CACHE_TTL instead of per call. */
export interface GatewayConfig {
  /** Enabled providers, highest priority first (then oldest). */
  providers: ProviderRow[];
  /** Public model name → its targets in order (disabled providers left out). */
  routes: Map<string, Target[]>;
  /** Model id → the enabled providers offering it under that id, by priority. */
  offered: Map<string, Target[]>;
  prices: Map<string, Price>;
  cache: CacheSettings;
  /** Provider keys opened so far (for as long as this setup is cached; never written anywhere). */
  keys: Map<string, string>;
}

export interface RouteTarget {
  provider_id: string;
  model: string;
}

/** Every provider, enabled or not (routes name them), and the tenant's routes, prices and settings. */
async function loadConfig(deps: Deps, tenantId: string): Promise<GatewayConfig> {
  const db = deps.db.kysely;
  const [providerRows, routeRows, priceRows, settings] = await Promise.all([
    listProviderRows(db, tenantId),
    listRouteRows(db, tenantId),
    listPriceRows(db, tenantId),
    findSettings(db, tenantId),
  ]);
  const providers = providerRows
    .filter((row) => row.disabled_at === null)
    .sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : 1));
  const byId = new Map(providers.map((row) => [row.id, row]));
  const offered = new Map<string, Target[]>();
  for (const provider of providers) {
    for (const model of json.read<string[]>(provider.models, [])) {
      offered.set(model, [...(offered.get(model) ?? []), { provider, model }]);
    }
  }
  const routes = new Map<string, Target[]>();
  for (const route of routeRows) {
    const targets = json.read<RouteTarget[]>(route.targets, []).flatMap((target) => {
      const provider = byId.get(target.provider_id);
      return provider ? [{ provider, model: target.model }] : [];
    });
    routes.set(route.model, targets);
  }
  return {
    providers,
    routes,
    offered,
    prices: new Map(priceRows.map((row) => [row.model, { input: row.input_micros, output: row.output_micros }])),
    cache: settings
      ? {
          enabled: settings.cache_enabled === 1,
          ttlSeconds: settings.cache_ttl_seconds,
          charge: settings.cache_charge,
        }
      : DEFAULT_CACHE,
    keys: new Map(),
  };
}

/** A provider's shared key in clear, for the outbound call only; opened once per cached setup. */
export function keyOf(deps: Deps, config: GatewayConfig, provider: ProviderRow): string {
  let key = config.keys.get(provider.id);
  if (key === undefined) {
    key = providerKey(deps, provider);
    config.keys.set(provider.id, key);
  }
  return key;
}

export async function gatewayConfig(deps: Deps, tenantId: string): Promise<GatewayConfig> {
  return (await deps.caches.auth.read('llm', tenantId, () => loadConfig(deps, tenantId))) as GatewayConfig;
}

/** After any change to a tenant's providers, routes, prices or settings (other instances: within the TTL). */
export function forgetGatewayConfig(deps: Deps, tenantId: string): void {
  deps.caches.auth.forget('llm', tenantId);
}

/**
 * Where a public model name is served: its route when it has one, else every enabled provider
 * that lists the model, by priority. Empty when nothing serves it.
 */
export function targetsFor(config: GatewayConfig, model: string): Target[] {
  return config.routes.get(model) ?? config.offered.get(model) ?? [];
}

/** The price of what a provider served: "provider/model" first, then its model id, then the public name. */
export function priceOf(config: GatewayConfig, target: Target, publicModel: string): Price | undefined {
  return (
    config.prices.get(`${target.provider.name}/${target.model}`) ??
    config.prices.get(target.model) ??
    config.prices.get(publicModel)
  );
}

/** Micro-dollars for the tokens, rounded to the micro-dollar; 0 without a price. */
export function costMicros(price: Price | undefined, promptTokens: number, completionTokens: number): number {
  if (!price) return 0;
  return Math.round((promptTokens * price.input + completionTokens * price.output) / 1_000_000);
}

/** Whether a plan's allow-list lets a public model name through (a trailing * matches a prefix). */
export function modelAllowed(allowed: string[] | null, model: string): boolean {
  if (allowed === null) return true;
  return allowed.some((entry) => (entry.endsWith('*') ? model.startsWith(entry.slice(0, -1)) : entry === model));
}

/** GET /api/llm/v1/models in OpenAI's shape: routed names and offered ids, once each, that the plan allows. */
export function modelList(config: GatewayConfig, allowed: string[] | null) {
  const data = new Map<string, { id: string; object: 'model'; created: number; owned_by: string }>();
  for (const [model, targets] of [...config.routes, ...config.offered]) {
    const first = targets[0];
    if (!first || data.has(model) || !modelAllowed(allowed, model)) continue;
    data.set(model, {
      id: model,
      object: 'model',
      created: Math.floor(first.provider.created_at / 1000),
      owned_by: first.provider.name,
    });
  }
  return { object: 'list' as const, data: [...data.values()].sort((a, b) => (a.id < b.id ? -1 : 1)) };
}
