import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { type App, errors, Page, PageQuery, Timestamp } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { listAudit } from './audit.service.js';

const AuditEvent = Type.Object({
  id: Type.String(),
  action: Type.String(),
  actor: Type.Object({ type: Type.String(), id: Type.Union([Type.String(), Type.Null()]) }),
  target: Type.Union([Type.Object({ type: Type.String(), id: Type.Union([Type.String(), Type.Null()]) }), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  data: Type.Record(Type.String(), Type.Unknown()),
  created_at: Timestamp,
});

export function registerAuditRoutes(app: App, deps: Deps): void {
  app.get(
    '/api/admin/audit',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags: ['admin: audit'],
        summary: 'Security events of the tenant, newest first',
        querystring: Type.Composite([
          PageQuery,
          Type.Object({
            action: Type.Optional(Type.String({ maxLength: 64 })),
            actor_id: Type.Optional(Type.String({ maxLength: 64 })),
            target_id: Type.Optional(Type.String({ maxLength: 64 })),
          }),
        ]),
        response: { 200: Page(AuditEvent), ...errors(401, 403) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      const q = request.query;
      return listAudit(deps, tenant.id, {
        action: q.action,
        actorId: q.actor_id,
        targetId: q.target_id,
        after: q.cursor,
        limit: q.limit,
      });
    },
  );
}
