import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, IdParams, Nullable } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { managerOf, requireManageableUser } from '../accounts/accounts.admin.service.js';
import { limitFields, Plan, PlanName } from './plans.schemas.js';
import { assignPlan, createPlan, deletePlan, getPlan, listPlans, updatePlan } from './plans.service.js';

export function registerPlanRoutes(app: App, deps: Deps): void {
  const tags = ['admin: plans'];
  const read = ['admin', 'service'] as const;
  const write = ['admin'] as const;

  app.get(
    '/api/admin/plans',
    {
      config: { auth: read },
      schema: { tags, response: { 200: Type.Object({ data: Type.Array(Type.Ref(Plan)) }), ...errors(401, 403) } },
    },
    async (request) => ({ data: await listPlans(deps, (await actingTenant(deps, request)).id) }),
  );

  app.post(
    '/api/admin/plans',
    {
      config: { auth: write },
      schema: {
        tags,
        summary: 'Create a plan; omitted limits are unlimited',
        body: Type.Object(
          {
            name: PlanName,
            ...Type.Partial(Type.Object(limitFields)).properties,
            default: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Ref(Plan), ...errors(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      const plan = await createPlan(deps, tenant.id, request.body, actorOf(request.principal), clientInfo(request));
      return reply.status(201).send(plan);
    },
  );

  app.get(
    '/api/admin/plans/:id',
    {
      config: { auth: read },
      schema: { tags, params: IdParams, response: { 200: Type.Ref(Plan), ...errors(401, 403, 404) } },
    },
    async (request) => getPlan(deps, (await actingTenant(deps, request)).id, request.params.id),
  );

  app.patch(
    '/api/admin/plans/:id',
    {
      config: { auth: write },
      schema: {
        tags,
        summary: 'Rename a plan, change its limits (null = unlimited) or make it the default',
        params: IdParams,
        body: Type.Object(
          {
            name: Type.Optional(PlanName),
            ...Type.Partial(Type.Object(limitFields)).properties,
            default: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Type.Ref(Plan), ...errors(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      return updatePlan(
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
    '/api/admin/plans/:id',
    {
      config: { auth: write },
      schema: {
        tags,
        summary: 'Delete a plan nobody is on (not the default)',
        params: IdParams,
        response: { 204: Type.Null(), ...errors(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      await deletePlan(deps, tenant.id, request.params.id, actorOf(request.principal), clientInfo(request));
      return reply.status(204).send(null);
    },
  );

  app.put(
    '/api/admin/users/:id/plan',
    {
      config: { auth: write },
      schema: {
        tags,
        summary: "Put a user on a plan (by id or name); null returns them to the tenant's default",
        params: IdParams,
        body: Type.Object({ plan: Nullable(Type.String({ maxLength: 64 })) }, { additionalProperties: false }),
        response: { 200: Type.Object({ user_id: Type.String(), plan: Type.Ref(Plan) }), ...errors(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      // Not on an account above the caller's role (ADR 0013).
      await requireManageableUser(deps, tenant.id, request.params.id, managerOf(request.principal));
      const plan = await assignPlan(
        deps,
        tenant.id,
        request.params.id,
        request.body.plan,
        actorOf(request.principal),
        clientInfo(request),
      );
      return { user_id: request.params.id, plan };
    },
  );
}
