import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, IdParams, Timestamp } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import {
  createRoute,
  deletePrice,
  deleteRoute,
  getRoute,
  getSettings,
  listPrices,
  listRoutes,
  setPrice,
  updateRoute,
  updateSettings,
} from './routing.service.js';

const ModelName = Type.String({ minLength: 1, maxLength: 200 });

const TargetInput = Type.Object(
  {
    provider: Type.String({ minLength: 1, maxLength: 64, description: "The provider's name or id" }),
    model: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: "The provider's id for the model; default: the route's model",
      }),
    ),
  },
  { additionalProperties: false },
);

const Route = Type.Object({
  id: Type.String(),
  model: Type.String({ description: 'The public model name clients ask for' }),
  targets: Type.Array(
    Type.Object({
      provider: Type.Union([Type.String(), Type.Null()], { description: 'null once the provider is gone' }),
      provider_id: Type.String(),
      model: Type.String(),
    }),
  ),
  created_at: Timestamp,
  updated_at: Timestamp,
});

const Targets = Type.Array(TargetInput, {
  minItems: 1,
  maxItems: 20,
  description: 'Tried in order: on a connection error, timeout, 429 or 5xx before the first byte, the next one',
});

const Usd = Type.Number({ minimum: 0, maximum: 100_000, description: 'USD per million tokens' });
const Price = Type.Object({
  model: Type.String(),
  input_usd_per_million: Type.Number(),
  output_usd_per_million: Type.Number(),
  updated_at: Timestamp,
});

const Settings = Type.Object({
  cache_enabled: Type.Boolean({
    description: 'Answer repeats of identical non-streaming requests with temperature 0 from the cache',
  }),
  cache_ttl_seconds: Type.Integer({ minimum: 1, maximum: 2_592_000 }),
  cache_charge: Type.Union([Type.Literal('tokens'), Type.Literal('free')], {
    description: 'tokens: a cached answer is charged like the call it repeats; free: it is not charged',
  }),
});

export function registerRoutingRoutes(app: App, deps: Deps): void {
  const auth = ['admin'] as const;
  const tags = ['admin: LLM routing'];
  const tenantOf = async (request: Parameters<typeof actingTenant>[1]) => (await actingTenant(deps, request)).id;

  app.get(
    '/api/admin/llm/routes',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'The routing table: public model names and the provider models that serve them, in order',
        response: { 200: Type.Object({ data: Type.Array(Route) }), ...errors(401, 403) },
      },
    },
    async (request) => ({ data: await listRoutes(deps, await tenantOf(request)) }),
  );

  app.post(
    '/api/admin/llm/routes',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Route a public model name to provider models (it replaces the providers’ own listing of that name)',
        body: Type.Object({ model: ModelName, targets: Targets }, { additionalProperties: false }),
        response: { 201: Route, ...errors(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const route = await createRoute(
        deps,
        await tenantOf(request),
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(201).send(route);
    },
  );

  app.get(
    '/api/admin/llm/routes/:id',
    { config: { auth }, schema: { tags, params: IdParams, response: { 200: Route, ...errors(401, 403, 404) } } },
    async (request) => getRoute(deps, await tenantOf(request), request.params.id),
  );

  app.patch(
    '/api/admin/llm/routes/:id',
    {
      config: { auth },
      schema: {
        tags,
        params: IdParams,
        body: Type.Object(
          { model: Type.Optional(ModelName), targets: Type.Optional(Targets) },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Route, ...errors(400, 401, 403, 404, 409) },
      },
    },
    async (request) =>
      updateRoute(
        deps,
        await tenantOf(request),
        request.params.id,
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      ),
  );

  app.delete(
    '/api/admin/llm/routes/:id',
    {
      config: { auth },
      schema: { tags, params: IdParams, response: { 204: Type.Null(), ...errors(401, 403, 404) } },
    },
    async (request, reply) => {
      await deleteRoute(
        deps,
        await tenantOf(request),
        request.params.id,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/api/admin/llm/prices',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'The price table: what usage events and the cost header charge per model',
        response: { 200: Type.Object({ data: Type.Array(Price) }), ...errors(401, 403) },
      },
    },
    async (request) => ({ data: await listPrices(deps, await tenantOf(request)) }),
  );

  app.put(
    '/api/admin/llm/prices',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Set one model’s price',
        description:
          'model is a provider model id ("gpt-4o-mini"), one provider’s ("openrouter/gpt-4o-mini"), or a public name; ' +
          'a call is priced by the first of those that has a price.',
        body: Type.Object(
          { model: ModelName, input_usd_per_million: Usd, output_usd_per_million: Usd },
          { additionalProperties: false },
        ),
        response: { 200: Price, ...errors(400, 401, 403) },
      },
    },
    async (request) =>
      setPrice(deps, await tenantOf(request), request.body, actorOf(request.principal), clientInfo(request)),
  );

  app.delete(
    '/api/admin/llm/prices',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Remove one model’s price',
        querystring: Type.Object({ model: ModelName }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      await deletePrice(
        deps,
        await tenantOf(request),
        request.query.model,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/api/admin/llm/settings',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'The gateway’s settings (response cache)',
        response: { 200: Settings, ...errors(401, 403) },
      },
    },
    async (request) => getSettings(deps, await tenantOf(request)),
  );

  app.patch(
    '/api/admin/llm/settings',
    {
      config: { auth },
      schema: {
        tags,
        body: Type.Partial(Settings, { additionalProperties: false, minProperties: 1 }),
        response: { 200: Settings, ...errors(400, 401, 403) },
      },
    },
    async (request) =>
      updateSettings(deps, await tenantOf(request), request.body, actorOf(request.principal), clientInfo(request)),
  );
}
