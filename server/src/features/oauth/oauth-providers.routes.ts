import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, IdParams, Nullable, Timestamp } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import {
  createOAuthProvider,
  deleteOAuthProvider,
  listOAuthProviders,
  OAUTH_PRESETS,
  presentOAuthProvider,
  requireOAuthProvider,
  updateOAuthProvider,
} from './oauth-providers.service.js';

const Url = Type.String({ minLength: 1, maxLength: 500 });
const Scopes = Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 50 });
const ExtraParams = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), Type.String({ maxLength: 500 }), {
  description: 'Extra authorization parameters (access_type=offline, prompt=consent, …)',
});

const OAuthProvider = Type.Object({
  id: Type.String(),
  name: Type.String({ description: 'Also the vault service its connections are saved under' }),
  preset: Nullable(Type.String()),
  client_id: Type.String(),
  has_client_secret: Type.Boolean({ description: 'The secret is stored encrypted and never returned' }),
  issuer: Nullable(Type.String()),
  authorization_endpoint: Type.String(),
  token_endpoint: Type.String(),
  revocation_endpoint: Nullable(Type.String()),
  userinfo_endpoint: Nullable(Type.String()),
  scopes: Type.Array(Type.String()),
  pkce: Type.Boolean(),
  extra_params: Type.Record(Type.String(), Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});

const fields = {
  name: Type.String({
    pattern: '^[a-z0-9][a-z0-9._-]{0,63}$',
    description: 'lowercase letters, digits, ".", "_" and "-"',
  }),
  client_id: Type.String({ minLength: 1, maxLength: 500 }),
  client_secret: Nullable(Type.String({ minLength: 1, maxLength: 4096 })),
  issuer: Type.String({ minLength: 1, maxLength: 500, description: 'OpenID issuer: its endpoints are discovered' }),
  authorization_endpoint: Url,
  token_endpoint: Url,
  revocation_endpoint: Nullable(Url),
  userinfo_endpoint: Nullable(Url),
  scopes: Scopes,
  pkce: Type.Boolean({ description: 'Send a PKCE S256 challenge (default true)' }),
  extra_params: ExtraParams,
};

export function registerOAuthProviderRoutes(app: App, deps: Deps): void {
  const tags = ['admin: OAuth providers'];
  const auth = ['admin'] as const;
  const tenantOf = async (request: Parameters<typeof actingTenant>[1]) => (await actingTenant(deps, request)).id;

  app.get(
    '/api/admin/oauth/presets',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Known providers: name one as `preset` and only the client id and secret are needed',
        response: {
          200: Type.Object({
            data: Type.Array(
              Type.Object({ preset: Type.String(), label: Type.String(), scopes: Type.Array(Type.String()) }),
            ),
          }),
          ...errors(401, 403),
        },
      },
    },
    async () => ({
      data: Object.entries(OAUTH_PRESETS).map(([preset, p]) => ({ preset, label: p.label, scopes: p.scopes })),
    }),
  );

  app.get(
    '/api/admin/oauth/providers',
    {
      config: { auth },
      schema: { tags, response: { 200: Type.Object({ data: Type.Array(OAuthProvider) }), ...errors(401, 403) } },
    },
    async (request) => ({ data: await listOAuthProviders(deps, await tenantOf(request)) }),
  );

  app.post(
    '/api/admin/oauth/providers',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Add an OAuth provider for vault connections (and sign-in)',
        body: Type.Object(
          {
            name: fields.name,
            preset: Type.Optional(Type.String({ maxLength: 32 })),
            client_id: fields.client_id,
            client_secret: Type.Optional(fields.client_secret),
            issuer: Type.Optional(fields.issuer),
            authorization_endpoint: Type.Optional(fields.authorization_endpoint),
            token_endpoint: Type.Optional(fields.token_endpoint),
            revocation_endpoint: Type.Optional(fields.revocation_endpoint),
            userinfo_endpoint: Type.Optional(fields.userinfo_endpoint),
            scopes: Type.Optional(fields.scopes),
            pkce: Type.Optional(fields.pkce),
            extra_params: Type.Optional(fields.extra_params),
          },
          { additionalProperties: false },
        ),
        response: { 201: OAuthProvider, ...errors(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const created = await createOAuthProvider(
        deps,
        await tenantOf(request),
        { ...request.body, revocation_endpoint: request.body.revocation_endpoint ?? undefined },
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/api/admin/oauth/providers/:id',
    {
      config: { auth },
      schema: { tags, params: IdParams, response: { 200: OAuthProvider, ...errors(401, 403, 404) } },
    },
    async (request) =>
      presentOAuthProvider(await requireOAuthProvider(deps, await tenantOf(request), request.params.id)),
  );

  app.patch(
    '/api/admin/oauth/providers/:id',
    {
      config: { auth },
      schema: {
        tags,
        summary: 'Change a provider; a new client_secret replaces the stored one',
        params: IdParams,
        body: Type.Partial(Type.Object(fields), { additionalProperties: false, minProperties: 1 }),
        response: { 200: OAuthProvider, ...errors(400, 401, 403, 404, 409) },
      },
    },
    async (request) =>
      updateOAuthProvider(
        deps,
        await tenantOf(request),
        request.params.id,
        request.body,
        actorOf(request.principal),
        clientInfo(request),
      ),
  );

  app.delete(
    '/api/admin/oauth/providers/:id',
    {
      config: { auth },
      schema: { tags, params: IdParams, response: { 204: Type.Null(), ...errors(401, 403, 404) } },
    },
    async (request, reply) => {
      await deleteOAuthProvider(
        deps,
        await tenantOf(request),
        request.params.id,
        actorOf(request.principal),
        clientInfo(request),
      );
      return reply.status(204).send(null);
    },
  );
}
