import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Deps } from '../deps.js';
import { listAllowedOrigins } from '../features/tenants/tenants.service.js';
import { TENANT_HEADER } from './tenant.js';

const ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE';
const ALLOW_HEADERS = `authorization, content-type, ${TENANT_HEADER}`;
const EXPOSE_HEADERS = 'retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-request-id';

/**
 * CORS per tenant allow-list (DESIGN security rules). Which origins a tenant allows is Gatehouse's
 * own policy, so it is written here rather than bent into @fastify/cors, whose per-request
 * delegator cost a measurable share of every request, with or without an Origin header.
 *
 * A request naming its tenant (publishable key header) is checked against that tenant's list; one
 * without, and preflights (which carry no header values), against the union of all tenants' lists.
 * Preflights are answered here, before authentication, as the Fetch standard requires.
 */
export function registerCors(app: FastifyInstance, deps: Deps): void {
  const allowed = async (request: FastifyRequest, origin: string, preflight: boolean): Promise<boolean> => {
    const origins = await listAllowedOrigins(deps);
    const header = request.headers[TENANT_HEADER];
    if (!preflight && typeof header === 'string' && header !== '') {
      return origins.byPublishableKey.get(header)?.has(origin) ?? false;
    }
    return origins.all.has(origin);
  };

  const handle = async (request: FastifyRequest, reply: FastifyReply, origin: string) => {
    // https://fetch.spec.whatwg.org/#cors-protocol-and-http-caches: the answer depends on Origin.
    reply.header('vary', 'Origin');
    const preflight = request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined;
    const ok = await allowed(request, origin, preflight);
    if (ok) reply.header('access-control-allow-origin', origin);
    if (!preflight) {
      if (ok) reply.header('access-control-expose-headers', EXPOSE_HEADERS);
      return;
    }
    if (ok) {
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
    if (origin === undefined) return done();
    handle(request, reply, origin).then(() => {
      if (!reply.sent) done();
    }, done);
  });

  app.options('*', { config: { auth: 'public' }, schema: { hide: true } }, async (_request, reply) =>
    reply.status(204).send(),
  );
}
