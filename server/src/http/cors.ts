import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Deps } from '../deps.js';
import { listAllowedOrigins, type OriginIndex } from '../features/tenants/tenants.service.js';
import { TENANT_HEADER } from './tenant.js';

const ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE';

/**
 * Request headers browser clients send, so a preflight must allow them: Gatehouse's own, and those
 * of the official `openai` SDK on the OpenAI-compatible routes (`OpenAI-Organization`,
 * `OpenAI-Project`, `OpenAI-Beta`, `Idempotency-Key`, `User-Agent` where the browser lets a script
 * set it, and its `X-Stainless-*` platform headers, whose names vary by version, hence a pattern).
 */
const ALLOWED_REQUEST_HEADERS = new Set([
  'authorization',
  'content-type',
  'accept',
  TENANT_HEADER,
  'openai-organization',
  'openai-project',
  'openai-beta',
  'idempotency-key',
  'user-agent',
]);
const STAINLESS_HEADER = /^x-stainless-[a-z0-9-]{1,64}$/;
const BASE_ALLOW_HEADERS = `authorization, content-type, ${TENANT_HEADER}`;

/**
 * Response headers a page may read (the Fetch standard hides all but a safelisted few): the limits
 * (draft-ietf-httpapi-ratelimit-headers and OpenAI's `x-ratelimit-*`), what a client needs to retry
 * well (`retry-after`, and OpenAI's `retry-after-ms` and `x-should-retry`, which its SDK reads), the
 * request id, and the LLM gateway's provider, cost and cache headers (docs/llm.md).
 */
const EXPOSE_HEADERS = [
  'retry-after',
  'retry-after-ms',
  'x-should-retry',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
  'x-request-id',
  'x-gatehouse-provider',
  'x-gatehouse-cost-usd',
  'x-gatehouse-cache',
].join(', ');

/** The headers a preflight allows: the base ones, and those asked for that a known client sends (at most 64 looked at). */
function allowHeaders(requested: string | string[] | undefined): string {
  const asked = (typeof requested === 'string' ? requested : '').split(',', 64);
  const allowed = new Set<string>();
  for (const raw of asked) {
    const name = raw.trim().toLowerCase();
    if (ALLOWED_REQUEST_HEADERS.has(name) || STAINLESS_HEADER.test(name)) allowed.add(name);
  }
  for (const name of BASE_ALLOW_HEADERS.split(', ')) allowed.delete(name);
  return allowed.size === 0 ? BASE_ALLOW_HEADERS : `${BASE_ALLOW_HEADERS}, ${[...allowed].join(', ')}`;
}

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
  const answerPreflight = async (request: FastifyRequest, reply: FastifyReply, origin: string) => {
    if ((await listAllowedOrigins(deps)).all.has(origin)) {
      reply.header('access-control-allow-origin', origin);
      reply.header('access-control-allow-methods', ALLOW_METHODS);
      reply.header('access-control-allow-headers', allowHeaders(request.headers['access-control-request-headers']));
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
    // https://fetch.spec.whatwg.org/#cors-protocol-and-http-caches: the answer depends on Origin (and the headers asked).
    reply.header('vary', 'Origin, Access-Control-Request-Headers');
    answerPreflight(request, reply, origin).then(() => {
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
