import cors from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Deps } from '../deps.js';
import { listAllowedOrigins } from '../features/tenants/tenants.service.js';
import { TENANT_HEADER } from './tenant.js';

/**
 * CORS per tenant allow-list (DESIGN security rules). A request naming its tenant (publishable
 * key header) is checked against that tenant's list; one without, and preflights (which carry no
 * header values), against the union of all tenants' lists.
 */
export async function registerCors(app: FastifyInstance, deps: Deps): Promise<void> {
  const allowed = async (request: FastifyRequest, origin: string): Promise<boolean> => {
    const origins = await listAllowedOrigins(deps);
    const header = request.headers[TENANT_HEADER];
    if (typeof header === 'string' && header !== '' && request.method !== 'OPTIONS') {
      return origins.byPublishableKey.get(header)?.has(origin) ?? false;
    }
    return origins.all.has(origin);
  };
  await app.register(cors, {
    delegator: (request, callback) => {
      const origin = request.headers.origin;
      if (!origin) return callback(null, { origin: false });
      allowed(request, origin).then(
        (ok) =>
          callback(null, {
            origin: ok ? origin : false,
            methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
            allowedHeaders: ['authorization', 'content-type', TENANT_HEADER],
            exposedHeaders: ['retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'],
            maxAge: 600,
          }),
        (error: Error) => callback(error),
      );
    },
  });
}
