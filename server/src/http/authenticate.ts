import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ResolvedPrincipal } from '../auth-cache.js';
import type { Deps } from '../deps.js';
import { AppError } from '../errors.js';
import { resolveApiKeyPrincipal } from '../features/api-keys/api-keys.service.js';
import { resolveServiceKeyPrincipal } from '../features/service-keys/service-keys.service.js';
import { resolveAccessTokenPrincipal } from '../features/sessions/sessions.service.js';
import { meterRequest } from '../features/usage/usage.service.js';
import { API_KEY_PREFIX, SERVICE_KEY_PREFIX } from '../lib/key-prefixes.js';
import type { ClientInfo, Principal, ServicePrincipal, UserPrincipal } from './principal.js';

/** Who may call a route. Operators pass every 'admin' check; 'public' needs no credential. */
export type Access = 'user' | 'admin' | 'operator' | 'service';
export type RouteAuth = 'public' | readonly Access[];

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: RouteAuth;
    /** false: the request is not counted against the caller's limits (reading one's own usage). */
    metered?: false;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** Every route with its declared access, in registration order (the contract test walks it). */
    accessTable: { method: string; url: string; auth: RouteAuth }[];
  }
}

const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

/** The principal cached for this exact Authorization header moments ago, if still valid. */
function cachedPrincipal(deps: Deps, authorization: string): ResolvedPrincipal | undefined {
  const resolved = deps.caches.auth.principal(authorization, deps.clock.now());
  if (resolved) noteUse(deps, resolved.principal);
  return resolved;
}

/**
 * The principal behind an Authorization header and until when its credential is good, the way
 * every HTTP request resolves it (the realtime feed authenticates its sockets with it too).
 */
export async function authenticateBearer(deps: Deps, authorization: string): Promise<ResolvedPrincipal> {
  return cachedPrincipal(deps, authorization) ?? (await resolvePrincipal(deps, authorization));
}

/** Resolves a bearer credential: API key first (seed 000), then service key, then access JWT. */
async function resolvePrincipal(deps: Deps, authorization: string): Promise<ResolvedPrincipal> {
  const match = BEARER.exec(authorization);
  if (!match) throw new AppError('invalid_token', 'Authorization header must be "Bearer <token>"');
  const token = match[1];
  const generation = deps.caches.auth.generation();
  const resolved = token.startsWith(`${API_KEY_PREFIX}_`)
    ? await resolveApiKeyPrincipal(deps, token)
    : token.startsWith(`${SERVICE_KEY_PREFIX}_`)
      ? await resolveServiceKeyPrincipal(deps, token)
      : await resolveAccessTokenPrincipal(deps, token);
  if (!resolved) throw new AppError('invalid_token', 'The bearer token is invalid, expired or revoked');
  deps.caches.auth.rememberPrincipal(authorization, resolved, generation);
  return resolved;
}

/** `last_used_at` of keys (buffered; see db/last-used.ts), also when the principal came from the cache. */
function noteUse(deps: Deps, principal: Principal): void {
  if (principal.kind === 'service') deps.lastUsed.mark('service_keys', principal.serviceKeyId, deps.clock.now());
  else if (principal.apiKeyId) deps.lastUsed.mark('api_keys', principal.apiKeyId, deps.clock.now());
}

function allows(access: readonly Access[], principal: Principal): boolean {
  if (principal.kind === 'service') return access.includes('service');
  if (principal.role === 'operator') return true;
  if (principal.role === 'admin' && access.includes('admin')) return true;
  return access.includes('user');
}

/**
 * Deny by default (DESIGN: a route that declares no access fails to register), then one
 * onRequest hook that authenticates and authorises every route from its `config.auth`.
 */
export function registerAuthentication(app: FastifyInstance, deps: Deps): void {
  app.decorateRequest('principal', null);
  const accessTable: FastifyInstance['accessTable'] = [];
  app.decorate('accessTable', accessTable);
  app.addHook('onRoute', (route) => {
    const auth = route.config?.auth;
    if (auth === undefined) {
      throw new Error(`Route ${route.method} ${route.url} declares no config.auth (public or a list of principals)`);
    }
    for (const method of [route.method].flat()) {
      if (method !== 'HEAD') accessTable.push({ method, url: route.url, auth });
    }
    // A POST without a body validates as {}, so a client that forgot it hears which fields are required.
    if (route.schema?.body) route.preValidation = [defaultEmptyBody, ...[route.preValidation ?? []].flat()];
  });
  /**
   * Puts the principal on the request if the route accepts it (else 403), then counts the request
   * against the caller's limits (429 when over).
   */
  const admit = (
    request: FastifyRequest,
    reply: FastifyReply,
    access: readonly Access[],
    principal: Principal,
    done: (error?: Error) => void,
  ) => {
    if (!allows(access, principal))
      return done(new AppError('forbidden', 'This credential may not call this endpoint'));
    request.principal = principal;
    if (request.routeOptions.config.metered === false) return done();
    meterRequest(deps, reply, principal, done);
  };
  // Callback style: public routes and credentials seen moments ago cost no promise.
  app.addHook('onRequest', (request, reply, done) => {
    const auth = request.routeOptions.config?.auth;
    if (auth === undefined || auth === 'public') return done();
    const authorization = request.headers.authorization;
    if (authorization === undefined) {
      return done(
        new AppError('unauthorized', 'Authentication required: send Authorization: Bearer <access token or API key>', {
          headers: { 'www-authenticate': 'Bearer' },
        }),
      );
    }
    const cached = cachedPrincipal(deps, authorization);
    if (cached) return admit(request, reply, auth, cached.principal, done);
    resolvePrincipal(deps, authorization).then(
      (resolved) => admit(request, reply, auth, resolved.principal, done),
      done,
    );
  });
}

function defaultEmptyBody(request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  if (request.body === undefined) request.body = {};
  done();
}

export function userOf(request: FastifyRequest): UserPrincipal {
  const principal = request.principal;
  if (principal?.kind !== 'user') throw new AppError('forbidden', 'This endpoint needs a user credential');
  return principal;
}

export function serviceOf(request: FastifyRequest): ServicePrincipal {
  const principal = request.principal;
  if (principal?.kind !== 'service') throw new AppError('forbidden', 'This endpoint needs a tenant service key');
  return principal;
}

export function clientInfo(request: FastifyRequest): ClientInfo {
  const userAgent = request.headers['user-agent'];
  return { ip: request.ip ?? null, userAgent: userAgent ? userAgent.slice(0, 512) : null };
}
