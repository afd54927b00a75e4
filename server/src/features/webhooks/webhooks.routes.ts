import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import {
  type App,
  errors,
  IdParams,
  Nullable,
  NullableTimestamp,
  Page,
  PageQuery,
  Timestamp,
} from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import {
  createEndpoint,
  deleteEndpoint,
  listAttempts,
  listEndpoints,
  presentEndpoint,
  replay,
  requireEndpoint,
  rotateSecret,
  testSend,
  updateEndpoint,
} from './webhooks.service.js';

const Endpoint = Type.Object({
  id: Type.String(),
  url: Type.String(),
  description: Nullable(Type.String()),
  event_types: Type.Array(Type.String(), { description: 'Subscribed event types; ["*"] for all' }),
  enabled: Type.Boolean(),
  disabled_reason: Nullable(Type.String()),
  failing_since: NullableTimestamp,
  secret_rotating_until: Type.Union([Timestamp, Type.Null()], {
    description: 'Until then deliveries carry the previous signature as well',
  }),
  created_at: Timestamp,
  updated_at: Timestamp,
});

const WithSecret = Type.Object({
  ...Endpoint.properties,
  secret: Type.String({ description: 'whsec_…: shown once; verify deliveries with any Standard Webhooks library' }),
});

const fields = {
  url: Type.String({ minLength: 1, maxLength: 1000 }),
  description: Nullable(Type.String({ maxLength: 500 })),
  event_types: Type.Array(Type.String({ maxLength: 64 }), { minItems: 1, maxItems: 50 }),
  enabled: Type.Boolean(),
};

const Attempt = Type.Object({
  id: Type.String(),
  event_id: Type.String(),
  attempt: Type.Integer(),
  status_code: Nullable(Type.Integer()),
  error: Nullable(Type.String()),
  latency_ms: Type.Integer(),
  response_excerpt: Nullable(Type.String()),
  created_at: Timestamp,
});

export function registerWebhookRoutes(app: App, deps: Deps): void {
  const tags = ['admin: webhooks'];
  const auth = ['admin'] as const;
  const tenantOf = async (request: Parameters<typeof actingTenant>[1]) => (await actingTenant(deps, request)).id;

  app.get(
    '/api/admin/webhooks',
    {
      config: { auth },
      schema: { tags, response: { 200: Type.Object({ data: Type.Array(Endpoint) }), ...errors(401, 403) } },
    },
    async (request) => ({ data: await listEndpoints(deps, await tenantOf(request)) }),
  );

  app.post(
    '/api/admin/webhooks',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Add an endpoint; its signing secret is in this answer only',
        description: 'A tenant has at most 50 endpoints (409 resource_limit_reached beyond).',
        body: Type.Object(
          {
            url: fields.url,
            description: Type.Optional(fields.description),
            event_types: Type.Optional(fields.event_types),
            enabled: Type.Optional(fields.enabled),
          },
          { additionalProperties: false },
        ),
        response: { 201: WithSecret, ...errors(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const created = await createEndpoint(
        deps,
        await tenantOf(request),
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/api/admin/webhooks/:id',
    { config: { auth }, schema: { tags, params: IdParams, response: { 200: Endpoint, ...errors(401, 403, 404) } } },
    async (request) => presentEndpoint(await requireEndpoint(deps, await tenantOf(request), request.params.id)),
  );

  app.patch(
    '/api/admin/webhooks/:id',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Change an endpoint; enabled: true brings back a disabled one',
        params: IdParams,
        body: Type.Partial(Type.Object(fields), { additionalProperties: false, minProperties: 1 }),
        response: { 200: Endpoint, ...errors(400, 401, 403, 404) },
      },
    },
    async (request) =>
      updateEndpoint(
        deps,
        await tenantOf(request),
        request.params.id,
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      ),
  );

  app.delete(
    '/api/admin/webhooks/:id',
    {
      config: { auth },
      schema: { tags, params: IdParams, response: { 204: Type.Null(), ...errors(401, 403, 404) } },
    },
    async (request, reply) => {
      await deleteEndpoint(
        deps,
        await tenantOf(request),
        request.params.id,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/admin/webhooks/:id/rotate-secret',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'A new signing secret (shown once); both are sent during WEBHOOK_SECRET_OVERLAP',
        params: IdParams,
        response: { 200: WithSecret, ...errors(401, 403, 404) },
      },
    },
    async (request) =>
      rotateSecret(deps, await tenantOf(request), request.params.id, actorOf(request.principal), clientInfo(request)),
  );

  app.get(
    '/api/admin/webhooks/:id/attempts',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'The delivery log: every attempt with its status, latency and the start of the answer',
        params: IdParams,
        querystring: PageQuery,
        response: { 200: Page(Attempt), ...errors(401, 403, 404) },
      },
    },
    async (request) => listAttempts(deps, await tenantOf(request), request.params.id, request.query),
  );

  app.post(
    '/api/admin/webhooks/:id/replay',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Send one event again (event_id), or every subscribed event since a time (since)',
        params: IdParams,
        body: Type.Object(
          {
            event_id: Type.Optional(Type.String({ maxLength: 64 })),
            since: Type.Optional(Type.String({ maxLength: 40 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ replayed: Type.Integer() }), ...errors(400, 401, 403, 404) },
      },
    },
    async (request) =>
      replay(
        deps,
        await tenantOf(request),
        request.params.id,
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      ),
  );

  app.post(
    '/api/admin/webhooks/:id/test',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Send a webhook.test event to this endpoint',
        params: IdParams,
        response: { 202: Type.Object({ event_id: Type.String() }), ...errors(401, 403, 404, 409) },
      },
    },
    async (request, reply) => reply.status(202).send(await testSend(deps, await tenantOf(request), request.params.id)),
  );
}
