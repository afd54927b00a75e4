import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Deps } from '../deps.js';
import { listAllowedOrigins, type OriginIndex } from '../features/tenants/tenants.service.js';
import { TENANT_HEADER } from './tenant.js';

const ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE';
const ALLOW_HEADERS = `authorization, content-type, ${TENANT_HEADER}`;
const EXPOSE_HEADERS = 'retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-request-id';

/** The tenant a request acts in: its credential's, else the publishable key it names, else the default. */
function tenantOf(request: FastifyRequest, index: OriginIndex): string | undefined {
  if (request.principal) return request.principal.tenantId;
  const header = request.headers[TENANT_HEADER];
  if (typeof header === 'string' && header !== '') return index.tenantIdByPublishableKey.get(header);
  return index.defaultTenantId;
}

/**
 * CORS per tenant allow-list (DESIGN security rules). Which origins a tenant allows is Gatehouse's
 * own policy, so it is written here rather than bent into @fastify/cors, whose per-request
 * delegator cost a measurable share of every request, with or without an Origin header (ADR 0006).
 *
 * A response is shared with an origin only if the tenant the request acted in allows it: the
 * tenant of the credential, decided after authentication (so one tenant's admin cannot open
 * another tenant's users to their origins), else the tenant named by the publishable key, else
 * the default tenant. Preflights carry no credential or header values, so they are answered, before
 * authentication as the Fetch standard requires, for any origin some tenant allows; the real request
 * is then checked as above.
 */
export function registerCors(app: FastifyInstance, deps: Deps): void {
  const answerPreflight = async (reply: FastifyReply, origin: string) => {
    if ((await listAllowedOrigins(deps)).all.has(origin)) {
      reply.header('access-control-allow-origin', origin);
      reply.header('access-control-allow-methods', ALLOW_METHODS);
      reply.header('access-control-allow-headers', ALLOW_HEADERS);
      reply.header('access-control-max-age', '600');
    }
    // Without the allow headers the browser refuses the real request; nothing more to say.
    await reply.status(204).send();
  };

  // Callback style so that the common case, no Origin header, costs no promise.
  app.addHook('onRequest', (request, reply, done) => {
    const origin = request.headers.origin;
    if (origin === undefined || request.method !== 'OPTIONS') return done();
    if (request.headers['access-control-request-method'] === undefined) return done();
    // https://fetch.spec.whatwg.org/#cors-protocol-and-http-caches: the answer depends on Origin.
    reply.header('vary', 'Origin');
    answerPreflight(reply, origin).then(() => {
      if (!reply.sent) done();
    }, done);
  });

  app.addHook('onSend', (request, reply, payload, done) => {
    const origin = request.headers.origin;
    if (origin === undefined || reply.hasHeader('access-control-allow-methods')) return done(null, payload);
    reply.header('vary', 'Origin');
    listAllowedOrigins(deps).then(
      (index) => {
        const tenantId = tenantOf(request, index);
        if (tenantId !== undefined && index.byTenantId.get(tenantId)?.has(origin)) {
          reply.header('access-control-allow-origin', origin);
          reply.header('access-control-expose-headers', EXPOSE_HEADERS);
        }
        done(null, payload);
      },
      (error: Error) => {
        request.log.error({ err: error }, 'CORS origins unavailable; answering without CORS headers');
        done(null, payload);
      },
    );
  });

  app.options('*', { config: { auth: 'public' }, schema: { hide: true } }, async (_request, reply) =>
    reply.status(204).send(),
  );
}
