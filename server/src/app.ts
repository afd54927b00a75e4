import { randomBytes } from 'node:crypto';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import { fastifySSE } from '@fastify/sse';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import type { Deps } from './deps.js';
import { AppError, handleError } from './errors.js';
import { registerAdminUserRoutes } from './features/accounts/accounts.admin.routes.js';
import { registerAccountRoutes } from './features/accounts/accounts.routes.js';
import { User } from './features/accounts/accounts.schemas.js';
import { registerApiKeyRoutes } from './features/api-keys/api-keys.routes.js';
import { registerAuditRoutes } from './features/audit/audit.routes.js';
import { registerDeviceRoutes } from './features/device/device.routes.js';
import { registerEventRoutes } from './features/events/events.routes.js';
import { registerHealthRoutes } from './features/health/health.routes.js';
import { registerChatRoutes } from './features/llm/chat.routes.js';
import { registerProviderRoutes } from './features/llm/providers.routes.js';
import { registerRoutingRoutes } from './features/llm/routing.routes.js';
import { registerOAuthProviderRoutes } from './features/oauth/oauth-providers.routes.js';
import { registerSignInRoutes } from './features/oauth/sign-in.routes.js';
import { registerPlanRoutes } from './features/plans/plans.routes.js';
import { Plan } from './features/plans/plans.schemas.js';
import { registerRealtimeRoutes } from './features/realtime/realtime.routes.js';
import { registerServiceKeyRoutes } from './features/service-keys/service-keys.routes.js';
import { registerSessionRoutes } from './features/sessions/sessions.routes.js';
import { pruneSessions } from './features/sessions/sessions.service.js';
import { registerSetupRoutes } from './features/setup/setup.routes.js';
import { registerSigningKeyRoutes } from './features/signing-keys/signing-keys.routes.js';
import { registerTenantRoutes, TenantBody } from './features/tenants/tenants.routes.js';
import { expireReservations } from './features/usage/budget.service.js';
import { registerUsageRoutes } from './features/usage/usage.routes.js';
import { TokenBudget } from './features/usage/usage.schemas.js';
import { flushUsage } from './features/usage/usage.service.js';
import { registerVaultRoutes } from './features/vault/vault.routes.js';
import { refreshDueConnections } from './features/vault/vault-oauth.js';
import { registerWebhookRoutes } from './features/webhooks/webhooks.routes.js';
import { startWebhookWorker } from './features/webhooks/webhooks.worker.js';
import { registerAuthentication } from './http/authenticate.js';
import { registerCors } from './http/cors.js';
import { registerInputGuards } from './http/input-guard.js';
import { createLazyRequestLogger } from './http/lazy-logger.js';
import { registerRequestMetrics } from './http/metrics.js';
import { ErrorBody } from './http/schemas.js';

/** Builds the HTTP app: cross-cutting plugins first, then every feature, in order. */
export async function buildApp(deps: Deps) {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    trustProxy: deps.config.trustProxy,
    // One access-log line per request (below) instead of Fastify's two, and a request logger
    // that exists only when something is logged.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: createLazyRequestLogger,
    bodyLimit: 1_048_576,
    genReqId: createRequestIds(),
    requestIdHeader: false,
    // Unknown fields are an error that names them, not silently dropped (DESIGN: bad input gets a 400 naming the field).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    // A __proto__ or constructor.prototype key in JSON is a 400 (secure-json-parse; see registerInputGuards).
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    ...requestTimeouts(deps.config.requestTimeoutMs),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setErrorHandler(handleError);
  registerInputGuards(app);
  app.setNotFoundHandler((request) => {
    throw new AppError('not_found', `No route for ${request.method} ${request.url.split('?')[0]}`);
  });
  await app.register(formbody);
  await app.register(cookie);
  await app.register(fastifySSE);
  await app.register(swagger, {
    // Shared schemas keep their $id as their name in components (User, Plan, …), not def-N.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Gatehouse',
        version: '0.1.0',
        description: 'Identity and access gateway for apps with AI features',
      },
      servers: [{ url: deps.config.publicUrl }],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'Access token, API key or service key' },
        },
      },
    },
    transform: ({ schema, url, route }) => ({
      url,
      schema: route.config?.auth === 'public' || !schema ? schema : { ...schema, security: [{ bearer: [] }] },
    }),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.addSchema(ErrorBody);
  app.addSchema(User);
  app.addSchema(TenantBody);
  app.addSchema(Plan);
  app.addSchema(TokenBudget);

  // Every answer names its request, including preflights and errors.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  registerCors(app, deps);
  // Everything registered from here on must declare who may call it.
  registerAuthentication(app, deps);
  registerRequestMetrics(app, deps);
  app.get('/openapi.json', { config: { auth: 'public' }, schema: { hide: true } }, async () => app.swagger());

  registerHealthRoutes(app, deps);
  registerSigningKeyRoutes(app, deps);
  registerSetupRoutes(app, deps);
  registerAccountRoutes(app, deps);
  registerSessionRoutes(app, deps);
  registerApiKeyRoutes(app, deps);
  registerTenantRoutes(app, deps);
  registerServiceKeyRoutes(app, deps);
  registerAdminUserRoutes(app, deps);
  registerPlanRoutes(app, deps);
  registerUsageRoutes(app, deps);
  registerProviderRoutes(app, deps);
  registerRoutingRoutes(app, deps);
  registerOAuthProviderRoutes(app, deps);
  registerSignInRoutes(app, deps);
  registerDeviceRoutes(app, deps);
  registerVaultRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerChatRoutes(app, deps);
  registerRealtimeRoutes(app, deps);
  registerEventRoutes(app, deps);
  registerAuditRoutes(app, deps);

  startHousekeeping(app, deps);
  return app;
}

/**
 * Periodic work owned by the app's lifetime: flush last-used times and request counts, prune
 * refresh tokens, expire forgotten token reservations, reload signing keys.
 */
function startHousekeeping(app: { addHook: (name: 'onClose', fn: () => Promise<void>) => unknown }, deps: Deps) {
  const every = (ms: number, task: () => Promise<void>, what: string) => {
    // Promise.resolve().then: a task that throws before returning its promise is caught too.
    const timer = setInterval(
      () =>
        Promise.resolve()
          .then(task)
          .catch((error) => deps.log.error({ err: error }, `${what} failed`)),
      ms,
    );
    timer.unref();
    return timer;
  };
  const timers = [
    every(5_000, () => deps.lastUsed.flush(), 'last-used flush'),
    every(1_000, () => flushUsage(deps), 'usage flush'),
    every(30_000, async () => void (await expireReservations(deps)), 'reservation expiry'),
    every(60_000, () => pruneSessions(deps), 'refresh token pruning'),
    every(60_000, () => deps.keyring.refresh(), 'signing key refresh'),
    every(60_000, async () => void (await refreshDueConnections(deps)), 'vault connection refresh'),
  ];
  const webhooks = startWebhookWorker(deps);
  app.addHook('onClose', async () => {
    for (const timer of timers) clearInterval(timer);
    // Each step runs whatever the others did (a database gone makes the flushes fail; the webhook
    // worker must still stop); the close then fails, naming what failed, so shutdown says so.
    const steps: [string, () => Promise<unknown>][] = [
      ['stopping the webhook worker', () => webhooks.stop()],
      ['the last-used flush', () => deps.lastUsed.flush()],
      ['the final usage flush', () => flushUsage(deps, { final: true })],
    ];
    const failed: string[] = [];
    for (const [what, step] of steps) {
      await step().catch((error) => {
        deps.log.error({ err: error }, `closing: ${what} failed`);
        failed.push(what);
      });
    }
    if (failed.length > 0) throw new Error(`closing the app: ${failed.join(', ')} failed`);
  });
}

/**
 * A request must arrive whole within `ms` (its headers within `ms` too, at most Node's 60 s): a
 * body trickled in byte by byte is cut with 408 instead of holding a socket forever. Only the
 * receiving of the request is bounded; answers (SSE, WebSocket, LLM streams) are not. Node checks
 * at `connectionsCheckingInterval`, so the check runs often enough to hold the bound to ~1.5×.
 */
function requestTimeouts(ms: number) {
  return {
    requestTimeout: ms,
    http: {
      headersTimeout: Math.min(ms, 60_000),
      connectionsCheckingInterval: Math.min(Math.max(ms / 2, 100), 30_000),
    },
  };
}

/**
 * Request ids: a random per-process prefix and a counter. Request ids are never stored, so they
 * need to be unique and cheap, not time-ordered (a ULID per request cost ~5% of a request).
 */
function createRequestIds(): () => string {
  const prefix = `req_${randomBytes(5).toString('hex')}`;
  let counter = 0;
  return () => `${prefix}${(++counter).toString(36).padStart(6, '0')}`;
}

export type GatehouseApp = Awaited<ReturnType<typeof buildApp>>;
