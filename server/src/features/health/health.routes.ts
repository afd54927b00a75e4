import { Type } from '@sinclair/typebox';
import { pingDb } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import type { App } from '../../http/schemas.js';

const Check = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) });

export function registerHealthRoutes(app: App, deps: Deps): void {
  const tags = ['operations'];

  app.get(
    '/healthz',
    { config: { auth: 'public' }, schema: { tags, summary: 'The process is up', response: { 200: Check } } },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Dependencies answer: database (and Redis when configured)',
        response: { 200: Check, 503: Check },
      },
    },
    async (_request, reply) => {
      const checks: Record<string, string> = {};
      try {
        await pingDb(deps.db);
        checks.database = 'ok';
      } catch {
        checks.database = 'unreachable';
      }
      if (deps.redis) checks.redis = deps.redis.status === 'ready' ? 'ok' : `unavailable (${deps.redis.status})`;
      const ready = Object.values(checks).every((value) => value === 'ok');
      return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
    },
  );

  app.get(
    '/metrics',
    { config: { auth: 'public' }, schema: { tags, summary: 'Prometheus metrics', hide: false } },
    async (_request, reply) => {
      reply.header('content-type', deps.metrics.contentType);
      return deps.metrics.metrics();
    },
  );
}
