import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, IdParams, NullableTimestamp, Timestamp } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { createServiceKey, listServiceKeys, revokeServiceKey } from './service-keys.service.js';

const ServiceKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  start: Type.String(),
  created_at: Timestamp,
  last_used_at: NullableTimestamp,
});

/** Secret keys for a tenant's own backends. Only people (admins, operators) manage them. */
export function registerServiceKeyRoutes(app: App, deps: Deps): void {
  const tags = ['admin: service keys'];
  const auth = ['admin'] as const;

  app.get(
    '/api/admin/service-keys',
    {
      config: { auth },
      schema: { tags, response: { 200: Type.Object({ data: Type.Array(ServiceKey) }), ...errors(401, 403) } },
    },
    async (request) => ({ data: await listServiceKeys(deps, (await actingTenant(deps, request)).id) }),
  );

  app.post(
    '/api/admin/service-keys',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Create a tenant service key; the secret is in this response only',
        body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }),
        response: { 201: Type.Composite([ServiceKey, Type.Object({ key: Type.String() })]), ...errors(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      const created = await createServiceKey(
        deps,
        tenant.id,
        request.body.name,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(201).send(created);
    },
  );

  app.delete(
    '/api/admin/service-keys/:id',
    { config: { auth }, schema: { tags, params: IdParams, response: { 204: Type.Null(), ...errors(401, 403, 404) } } },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      await revokeServiceKey(deps, tenant.id, request.params.id, actorOf(request.principal), clientInfo(request));
      return reply.status(204).send(null);
    },
  );
}
