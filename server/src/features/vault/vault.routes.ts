import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, NullableTimestamp, Page, PageQuery, Timestamp } from '../../http/schemas.js';
import { getAuth, listConnections, refreshAuth, revokeAuth, saveAuth, vaultOwner } from './vault.service.js';
import { registerVaultConnectPage, vaultBrowserSecret } from './vault-connect.routes.js';
import { finishConnect, startConnect } from './vault-oauth.js';

const ServiceParams = Type.Object({
  service: Type.String({
    pattern: '^[a-z0-9][a-z0-9._-]{0,63}$',
    description: 'The third-party service: lowercase letters, digits, ".", "_" and "-" (e.g. gmail, github)',
  }),
});

const UserQuery = Type.Object(
  {
    user_id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description:
          "With a service key: whose connection, a Gatehouse user id (usr_…) or your app's own id for the user. " +
          'Users calling with their own credential may omit it.',
      }),
    ),
  },
  { additionalProperties: false },
);

const Connection = Type.Object({
  service: Type.String(),
  user_id: Type.String({ description: "The owner: a Gatehouse user id or the app's own id" }),
  oauth: Type.Boolean({ description: 'Made through an OAuth provider here (so it refreshes itself)' }),
  status: Type.Union([Type.Literal('active'), Type.Literal('needs_reauth')], {
    description: 'needs_reauth: the provider rejected the refresh token; send a new auth link',
  }),
  expires_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
});

const ConnectionWithData = Type.Object({
  ...Connection.properties,
  auth_data: Type.Unknown({ description: 'The auth data as saved: any JSON' }),
});

export function registerVaultRoutes(app: App, deps: Deps): void {
  const tags = ['vault'];
  registerVaultConnectPage(app, deps);
  const auth = ['user', 'service'] as const;

  app.get(
    '/api/vault/connections',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'List connections, without their auth data',
        description:
          "A user's credential lists their own; a service key lists the tenant's, or one user's with user_id.",
        querystring: Type.Composite([PageQuery, UserQuery], { additionalProperties: false }),
        response: { 200: Page(Connection), ...errors(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { user_id: userId, cursor, limit } = request.query;
      const principal = request.principal!;
      const owner =
        principal.kind === 'service' && userId === undefined ? undefined : await vaultOwner(deps, principal, userId);
      return listConnections(deps, principal.tenantId, { owner: owner?.owner, cursor, limit });
    },
  );

  app.put(
    '/api/vault/connections/:service',
    {
      config: { auth },
      bodyLimit: 128 * 1024,
      schema: {
        tags,
        summary: 'saveAuth: store any auth data for a user and a service (replaces what was there)',
        description:
          'auth_data is any JSON (OAuth2 tokens, a JWT, an API key, session data), stored only as AES-256-GCM ' +
          "ciphertext under the tenant's data key. Without expires_at, an OAuth2 expires_in (seconds) in auth_data sets it.",
        params: ServiceParams,
        querystring: UserQuery,
        body: Type.Object(
          {
            auth_data: Type.Unknown({ description: 'Any JSON, at most 64 KB' }),
            expires_at: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
          },
          { additionalProperties: false },
        ),
        response: { 200: Connection, 201: Connection, ...errors(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const owner = await vaultOwner(deps, request.principal!, request.query.user_id);
      const { connection, created } = await saveAuth(
        deps,
        owner,
        request.params.service,
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(created ? 201 : 200).send(connection);
    },
  );

  app.get(
    '/api/vault/connections/:service',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'getAuth: the auth data saved for a user and a service',
        params: ServiceParams,
        querystring: UserQuery,
        response: { 200: ConnectionWithData, ...errors(400, 401, 403, 404, 409, 502) },
      },
    },
    async (request) =>
      getAuth(deps, await vaultOwner(deps, request.principal!, request.query.user_id), request.params.service),
  );

  app.post(
    '/api/vault/connections/:service/refresh',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'refreshAuth: refresh an OAuth connection now',
        params: ServiceParams,
        querystring: UserQuery,
        response: { 200: ConnectionWithData, ...errors(400, 401, 403, 404, 409, 502) },
      },
    },
    async (request) =>
      refreshAuth(deps, await vaultOwner(deps, request.principal!, request.query.user_id), request.params.service),
  );

  app.post(
    '/api/vault/auth-url',
    {
      config: { auth },
      schema: {
        tags,
        summary: "sendAuthLink: a link that connects the user's account at a service",
        description:
          'The service must have an OAuth provider (/api/admin/oauth/providers). The link is a Gatehouse page ' +
          '(<PUBLIC_URL>/vault/connect) that says whose connection it makes and, on Continue, binds the flow to ' +
          "that browser and sends it to the provider. Valid 10 minutes, in one browser, once; after the provider's " +
          'consent the browser comes back to /api/vault/callback (refused in any other browser), then to ' +
          "redirect_after (one of the tenant's allowed_redirect_uris) with ?service=…&status=connected or &error=….",
        body: Type.Object(
          {
            service: ServiceParams.properties.service,
            user_id: UserQuery.properties.user_id,
            redirect_after: Type.Optional(Type.String({ maxLength: 500 })),
            scopes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 50 })),
            config: Type.Optional(
              Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), Type.String({ maxLength: 500 }), {
                description: 'Extra authorization parameters for this link (login_hint, prompt, …)',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ url: Type.String(), state: Type.String(), expires_at: Timestamp }),
          ...errors(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const { user_id: userId, ...input } = request.body;
      return startConnect(deps, await vaultOwner(deps, request.principal!, userId), input);
    },
  );

  app.get(
    '/api/vault/callback',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary:
          'The OAuth redirect target: checks the state and the browser it was bound to, exchanges the code (PKCE), stores the tokens',
        querystring: Type.Object({
          code: Type.Optional(Type.String({ maxLength: 4096 })),
          state: Type.Optional(Type.String({ maxLength: 512 })),
          error: Type.Optional(Type.String({ maxLength: 200 })),
          error_description: Type.Optional(Type.String({ maxLength: 2000 })),
          iss: Type.Optional(Type.String({ maxLength: 500 })),
        }),
        response: {
          200: Type.Object({ service: Type.String(), status: Type.String() }),
          302: Type.Null(),
          ...errors(400, 502),
        },
      },
    },
    async (request, reply) => {
      const url = new URL(request.url, deps.config.publicUrl);
      const done = await finishConnect(deps, request.query, url, vaultBrowserSecret(deps, request));
      if (done.redirect) return reply.redirect(done.redirect, 302);
      return { service: done.service, status: done.error ? `error: ${done.error}` : 'connected' };
    },
  );

  app.delete(
    '/api/vault/connections/:service',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'revokeAuth: revoke the tokens at the provider (when it can) and forget the connection',
        params: ServiceParams,
        querystring: UserQuery,
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const owner = await vaultOwner(deps, request.principal!, request.query.user_id);
      await revokeAuth(deps, owner, request.params.service, actorOf(request.principal), clientInfo(request));
      return reply.status(204).send(null);
    },
  );
}
