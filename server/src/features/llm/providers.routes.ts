import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo, userOf } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, IdParams, Timestamp } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { gatewayConfig, modelList } from './gateway-config.js';
import { openaiErrorShape, openaiErrors } from './openai-errors.js';
import {
  createProvider,
  deleteProvider,
  getProvider,
  listProviders,
  PROVIDER_PRESETS,
  updateProvider,
} from './providers.service.js';

const Provider = Type.Object({
  id: Type.String(),
  name: Type.String(),
  kind: Type.Literal('openai', { description: 'OpenAI-compatible chat completions' }),
  base_url: Type.String(),
  models: Type.Array(Type.String()),
  priority: Type.Integer({ description: 'Higher is tried first for a model several providers offer' }),
  enabled: Type.Boolean(),
  circuit_open: Type.Boolean({
    description: 'Skipped by this instance after consecutive failures, until a trial call succeeds',
  }),
  created_at: Timestamp,
  updated_at: Timestamp,
});

const fields = {
  name: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,47}$', description: 'lowercase letters, digits, - and _' }),
  base_url: Type.String({ maxLength: 500, description: 'OpenAI-compatible base URL, e.g. https://api.openai.com/v1' }),
  api_key: Type.String({
    minLength: 1,
    maxLength: 4096,
    description: 'The shared provider key: stored encrypted, never returned, never sent to a client',
  }),
  models: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), {
    maxItems: 500,
    description: "The provider's model ids offered to users",
  }),
  priority: Type.Integer({ minimum: -1000, maximum: 1000 }),
  enabled: Type.Boolean(),
};

const presetNames = Object.keys(PROVIDER_PRESETS) as (keyof typeof PROVIDER_PRESETS)[];

export function registerProviderRoutes(app: App, deps: Deps): void {
  const tags = ['admin: LLM providers'];
  const auth = ['admin'] as const;

  app.get(
    '/api/admin/llm/presets',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Known OpenAI-compatible providers: name one as `preset` instead of a base_url',
        response: {
          200: Type.Object({
            data: Type.Array(Type.Object({ preset: Type.String(), label: Type.String(), base_url: Type.String() })),
          }),
          ...errors(401, 403),
        },
      },
    },
    async () => ({
      data: presetNames.map((preset) => ({ preset, ...PROVIDER_PRESETS[preset] })),
    }),
  );

  app.get(
    '/api/admin/llm/providers',
    {
      config: { auth },
      schema: { tags, response: { 200: Type.Object({ data: Type.Array(Provider) }), ...errors(401, 403) } },
    },
    async (request) => ({ data: await listProviders(deps, (await actingTenant(deps, request)).id) }),
  );

  app.post(
    '/api/admin/llm/providers',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Add a provider with the shared key your users’ LLM calls will use',
        body: Type.Object(
          {
            name: fields.name,
            preset: Type.Optional(Type.Union(presetNames.map((name) => Type.Literal(name)))),
            base_url: Type.Optional(fields.base_url),
            api_key: fields.api_key,
            models: Type.Optional(fields.models),
            priority: Type.Optional(fields.priority),
            enabled: Type.Optional(fields.enabled),
          },
          { additionalProperties: false },
        ),
        response: { 201: Provider, ...errors(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      const created = await createProvider(
        deps,
        tenant.id,
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/api/admin/llm/providers/:id',
    { config: { auth }, schema: { tags, params: IdParams, response: { 200: Provider, ...errors(401, 403, 404) } } },
    async (request) => getProvider(deps, (await actingTenant(deps, request)).id, request.params.id),
  );

  app.patch(
    '/api/admin/llm/providers/:id',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Change a provider; a new api_key replaces the stored one',
        params: IdParams,
        body: Type.Partial(Type.Object(fields), { additionalProperties: false }),
        response: { 200: Provider, ...errors(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      return updateProvider(
        deps,
        tenant.id,
        request.params.id,
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      );
    },
  );

  app.delete(
    '/api/admin/llm/providers/:id',
    {
      config: { auth },
      schema: { tags, params: IdParams, response: { 204: Type.Null(), ...errors(401, 403, 404, 409) } },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      await deleteProvider(deps, tenant.id, request.params.id, actorOf(request.principal), clientInfo(request));
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/api/llm/v1/models',
    {
      config: { auth: ['user'] },
      schema: {
        tags: ['llm'],
        summary: 'The models you may call (OpenAI-compatible list)',
        response: {
          200: Type.Object({
            object: Type.Literal('list'),
            data: Type.Array(
              Type.Object({
                id: Type.String(),
                object: Type.Literal('model'),
                created: Type.Integer(),
                owned_by: Type.String(),
              }),
            ),
          }),
          ...openaiErrors(401, 403),
        },
      },
      preSerialization: openaiErrorShape,
    },
    async (request) => {
      const user = userOf(request);
      return modelList(await gatewayConfig(deps, user.tenantId), user.limits.allowedModels);
    },
  );
}
