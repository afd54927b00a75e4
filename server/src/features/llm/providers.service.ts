import { json, transaction } from '../../db/index.js';
import type { LlmProviderTable } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField, notFound } from '../../errors.js';
import type { Actor, ClientInfo } from '../../http/principal.js';
import { checkUrlHost, OutboundRefused } from '../../lib/outbound.js';
import { recordAudit } from '../audit/audit.service.js';
import { breakersOf } from './breakers.js';
import { forgetGatewayConfig, type RouteTarget } from './gateway-config.js';
import {
  deleteProviderRow,
  findProvider,
  insertProvider,
  listProviderRows,
  type ProviderRow,
  updateProviderRow,
} from './providers.repo.js';
import { listRouteRows } from './routing.repo.js';

/** OpenAI-compatible endpoints of the providers the seeds name, so an admin only pastes a key. */
export const PROVIDER_PRESETS = {
  openai: { label: 'OpenAI', base_url: 'https://api.openai.com/v1' },
  openrouter: { label: 'OpenRouter', base_url: 'https://openrouter.ai/api/v1' },
  glm: { label: 'GLM (Zhipu AI)', base_url: 'https://open.bigmodel.cn/api/paas/v4' },
  glama: { label: 'Glama', base_url: 'https://glama.ai/api/gateway/openai/v1' },
  requesty: { label: 'Requesty', base_url: 'https://router.requesty.ai/v1' },
  aimlapi: { label: 'AI/ML API', base_url: 'https://api.aimlapi.com/v1' },
} as const;

export type PresetName = keyof typeof PROVIDER_PRESETS;

export interface ProviderInput {
  name: string;
  preset?: PresetName;
  base_url?: string;
  api_key: string;
  models?: string[];
  priority?: number;
  enabled?: boolean;
}

const keyAad = (id: string) => `llm_provider:${id}`;

export function presentProvider(deps: Deps, row: ProviderRow) {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    base_url: row.base_url,
    models: json.read<string[]>(row.models, []),
    priority: row.priority,
    enabled: row.disabled_at === null,
    circuit_open: breakersOf(deps).isOpen(row.id),
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

/**
 * An http(s) URL without credentials, query or fragment, kept without its trailing slash. An
 * address literal outside the outbound policy is refused here; names are checked when connecting.
 */
function baseUrl(deps: Deps, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalidField('base_url', 'must be a URL such as https://api.example.com/v1');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalidField('base_url', 'must be http(s)');
  if (url.username || url.password || url.search || url.hash) {
    throw invalidField('base_url', 'must not carry credentials, a query or a fragment (the key goes in api_key)');
  }
  try {
    checkUrlHost(url, deps.outbound.allowed);
  } catch (error) {
    if (error instanceof OutboundRefused) throw invalidField('base_url', error.message);
    throw error;
  }
  return url.toString().replace(/\/+$/, '');
}

export async function listProviders(deps: Deps, tenantId: string) {
  return (await listProviderRows(deps.db.kysely, tenantId)).map((row) => presentProvider(deps, row));
}

async function requireProvider(deps: Deps, tenantId: string, id: string): Promise<ProviderRow> {
  const row = await findProvider(deps.db.kysely, tenantId, id);
  if (!row) throw notFound('LLM provider');
  return row;
}

export async function getProvider(deps: Deps, tenantId: string, id: string) {
  return presentProvider(deps, await requireProvider(deps, tenantId, id));
}

export async function createProvider(
  deps: Deps,
  tenantId: string,
  input: ProviderInput,
  actor: Actor,
  client: ClientInfo,
) {
  const url = input.base_url ?? (input.preset && PROVIDER_PRESETS[input.preset].base_url);
  if (!url) throw invalidField('base_url', 'is required unless a preset is named');
  const now = deps.clock.now();
  const id = deps.ids.next('prv');
  const row: ProviderRow = {
    id,
    tenant_id: tenantId,
    name: input.name,
    kind: 'openai',
    base_url: baseUrl(deps, url),
    api_key_sealed: deps.masterKey.seal(input.api_key, keyAad(id)),
    models: json.write([...new Set(input.models ?? [])]),
    priority: input.priority ?? 0,
    disabled_at: input.enabled === false ? now : null,
    created_at: now,
    updated_at: now,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await insertProvider(trx, row);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_provider.created',
      actor,
      target: { type: 'llm_provider', id },
      client,
      data: { name: row.name, base_url: row.base_url },
    });
  });
  forgetGatewayConfig(deps, tenantId);
  return presentProvider(deps, row);
}

/** Changes any field; a new `api_key` replaces the stored one (it is never shown). */
export async function updateProvider(
  deps: Deps,
  tenantId: string,
  id: string,
  input: Partial<Omit<ProviderInput, 'preset'>>,
  actor: Actor,
  client: ClientInfo,
) {
  const row = await requireProvider(deps, tenantId, id);
  const now = deps.clock.now();
  const changes: Partial<ProviderRow> = { updated_at: now };
  if (input.name !== undefined) changes.name = input.name;
  if (input.base_url !== undefined) changes.base_url = baseUrl(deps, input.base_url);
  if (input.api_key !== undefined) changes.api_key_sealed = deps.masterKey.seal(input.api_key, keyAad(id));
  if (input.models !== undefined) changes.models = json.write([...new Set(input.models)]);
  if (input.priority !== undefined) changes.priority = input.priority;
  if (input.enabled !== undefined) changes.disabled_at = input.enabled ? null : (row.disabled_at ?? now);
  await transaction(deps.db.kysely, async (trx) => {
    await updateProviderRow(trx, tenantId, id, changes);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_provider.updated',
      actor,
      target: { type: 'llm_provider', id },
      client,
      // Which fields changed, never their values (one of them may be the key).
      data: { fields: Object.keys(input) },
    });
  });
  forgetGatewayConfig(deps, tenantId);
  return getProvider(deps, tenantId, id);
}

export async function deleteProvider(deps: Deps, tenantId: string, id: string, actor: Actor, client: ClientInfo) {
  const row = await requireProvider(deps, tenantId, id);
  await transaction(deps.db.kysely, async (trx) => {
    const routes = (await listRouteRows(trx, tenantId)).filter((route) =>
      json.read<RouteTarget[]>(route.targets, []).some((target) => target.provider_id === id),
    );
    if (routes.length > 0) {
      const models = routes.map((route) => route.model);
      throw new AppError(
        'conflict',
        `Routes still send calls to this provider: ${models.join(', ')}; change them first`,
        {
          details: { routes: models },
        },
      );
    }
    await deleteProviderRow(trx, tenantId, id);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'llm_provider.deleted',
      actor,
      target: { type: 'llm_provider', id },
      client,
      data: { name: row.name },
    });
  });
  forgetGatewayConfig(deps, tenantId);
}

/** The provider's key in clear, for the outbound call only (the LLM gateway). */
export function providerKey(deps: Deps, row: Pick<LlmProviderTable, 'id' | 'api_key_sealed'>): string {
  return deps.masterKey.open(row.api_key_sealed, keyAad(row.id)).toString('utf8');
}
