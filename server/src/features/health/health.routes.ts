import { Type } from '@sinclair/typebox';
import { pingDb } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import type { App } from '../../http/schemas.js';

const Check = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) });

const LIMIT_STATES = {
  local: 'ok (in memory: one instance)',
  shared: 'ok (shared by all instances)',
  per_instance: 'degraded: Redis unavailable, counting per instance (RATE_LIMIT_STORE_FAILURE=open)',
  refusing: 'failing: Redis unavailable, limited requests refused (RATE_LIMIT_STORE_FAILURE=closed)',
} as const;

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
        summary: 'Dependencies answer: database, Redis when configured, and where rate limits count',
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
      if (deps.redis) checks.redis = deps.redis.isReady ? 'ok' : 'unavailable';
      const limits = deps.limiters.state();
      checks.rate_limits = deps.config.limits.enabled ? LIMIT_STATES[limits] : 'off (RATE_LIMITS=off)';
      // Without Redis, fail-open keeps serving (degraded, still ready); fail-closed refuses limited requests.
      const ready = checks.database === 'ok' && limits !== 'refusing';
      const status = !ready ? 'not_ready' : checks.redis && checks.redis !== 'ok' ? 'degraded' : 'ready';
      return reply.status(ready ? 200 : 503).send({ status, checks });
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
