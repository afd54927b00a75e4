import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { type App, errors, Page, PageQuery, Timestamp } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { listEvents } from './events.service.js';

const Event = Type.Object({
  id: Type.String(),
  type: Type.String(),
  timestamp: Timestamp,
  data: Type.Record(Type.String(), Type.Unknown()),
});

export function registerEventRoutes(app: App, deps: Deps): void {
  app.get(
    '/api/admin/events',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags: ['admin: events'],
        summary: 'Events emitted for the tenant (the webhook payloads), newest first',
        querystring: Type.Composite([PageQuery, Type.Object({ type: Type.Optional(Type.String({ maxLength: 64 })) })]),
        response: { 200: Page(Event), ...errors(401, 403) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      const { type, cursor, limit } = request.query;
      return listEvents(deps, tenant.id, { type, after: cursor, limit });
    },
  );
}
