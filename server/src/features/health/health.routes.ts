import { Type } from '@sinclair/typebox';
import { pingDb } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { App } from '../../http/schemas.js';
import { safeEqual, sha256 } from '../../lib/tokens.js';

const Check = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) });

const LIMIT_STATES = {
  local: 'ok (in memory: one instance)',
  shared: 'ok (shared by all instances)',
  per_instance: 'degraded: Redis unavailable, counting per instance (RATE_LIMIT_STORE_FAILURE=open)',
  refusing: 'failing: Redis unavailable, limited requests refused (RATE_LIMIT_STORE_FAILURE=closed)',
} as const;

/** How long /readyz waits for the database (below the usual 5 s probe timeout of orchestrators). */
const READY_TIMEOUT_MS = 2_000;

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
        // Its own short bound: a hung database makes this 503, not a probe that never answers.
        await pingDb(deps.db, READY_TIMEOUT_MS);
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

  // Metrics name tenants, providers and routes: not for the public. On this port only with
  // METRICS_TOKEN as a bearer token (as LiteLLM guards its own); METRICS_PORT serves them apart
  // (as Keycloak's management port does). Neither set: 404, as if the route did not exist.
  const { token } = deps.config.metrics;
  app.get(
    '/metrics',
    {
      config: { auth: 'public' },
      // Documented always (docs/operations.md says who may read it), so the OpenAPI document does not depend on config.
      schema: { tags, summary: 'Prometheus metrics', hide: false },
    },
    async (request, reply) => {
      if (token === undefined) throw new AppError('not_found', 'No route for GET /metrics');
      const given = /^Bearer +(.+)$/i.exec(request.headers.authorization ?? '')?.[1]?.trim() ?? '';
      if (!safeEqual(sha256(given), sha256(token))) {
        throw new AppError('unauthorized', 'The metrics token is required', {
          headers: { 'www-authenticate': 'Bearer realm="metrics"' },
        });
      }
      reply.header('content-type', deps.metrics.contentType);
      return deps.metrics.metrics();
    },
  );
}
