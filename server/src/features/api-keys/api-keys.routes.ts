import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo, serviceOf, userOf } from '../../http/authenticate.js';
import { type App, errors, IdParams, NullableTimestamp, Timestamp } from '../../http/schemas.js';
import { ApiKey, IssuedApiKey, KeyLimitFields } from './api-keys.schemas.js';
import { createUserApiKey, listApiKeys, revokeApiKey, rotateApiKey, verifyApiKey } from './api-keys.service.js';

const Scope = Type.String({ pattern: '^[A-Za-z0-9:._*-]{1,64}$' });

const VerifyResponse = Type.Object({
  valid: Type.Boolean(),
  code: Type.Union(
    ['VALID', 'NOT_FOUND', 'EXPIRED', 'REVOKED', 'DISABLED', 'RATE_LIMITED', 'USAGE_EXCEEDED'].map((c) =>
      Type.Literal(c),
    ),
  ),
  key_id: Type.Union([Type.String(), Type.Null()]),
  user_id: Type.Union([Type.String(), Type.Null()]),
  tenant_id: Type.String({
    description: "The tenant the key was looked up in: the service key's (a key of another tenant is NOT_FOUND)",
  }),
  scopes: Type.Array(Type.String()),
  expires_at: NullableTimestamp,
  ratelimits: Type.Optional(
    Type.Array(
      Type.Object({
        name: Type.String(),
        limit: Type.Integer(),
        remaining: Type.Integer(),
        reset: Timestamp,
        exceeded: Type.Boolean(),
      }),
      { description: 'The limits asked for, after this call counted (unlimited ones are left out)' },
    ),
  ),
  credits: Type.Optional(
    Type.Object(
      {
        cost: Type.Integer(),
        remaining: Type.Union([Type.Integer(), Type.Null()]),
        limit: Type.Union([Type.Integer(), Type.Null()]),
      },
      { description: "The user's token budget after this charge (null: unlimited)" },
    ),
  ),
});

const VerifyBody = Type.Object(
  {
    key: Type.String({ maxLength: 512 }),
    ratelimits: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({
              pattern: '^[A-Za-z0-9_.:-]{1,64}$',
              description: "'requests' or 'llm_requests' (the plan's and key's hourly limits), or your own name",
            }),
            cost: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, default: 1 })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000 })),
            duration: Type.Optional(
              Type.Integer({ minimum: 1000, maximum: 30 * 86_400_000, description: 'Window, ms (whole seconds)' }),
            ),
          },
          { additionalProperties: false },
        ),
        { maxItems: 10 },
      ),
    ),
    credits: Type.Optional(
      Type.Object(
        {
          cost: Type.Integer({
            minimum: 0,
            maximum: 100_000_000,
            description: "Tokens to charge to the user's budget",
          }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export function registerApiKeyRoutes(app: App, deps: Deps): void {
  const tags = ['api keys'];

  app.get(
    '/api/keys',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'Your API keys (never the secrets)',
        response: { 200: Type.Object({ data: Type.Array(ApiKey) }), ...errors(401) },
      },
    },
    async (request) => ({ data: await listApiKeys(deps, userOf(request)) }),
  );

  app.post(
    '/api/keys',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'Create an API key; the secret is in this response only',
        description: 'A user holds at most 100 live keys (409 resource_limit_reached beyond; revoke one first).',
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 100 }),
            scopes: Type.Optional(Type.Array(Scope, { maxItems: 50 })),
            expires_in: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 86400, description: 'seconds' })),
            ...Type.Partial(Type.Object(KeyLimitFields)).properties,
          },
          { additionalProperties: false },
        ),
        response: { 201: IssuedApiKey, ...errors(400, 401, 409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await createUserApiKey(deps, userOf(request), request.body, clientInfo(request))),
  );

  app.delete(
    '/api/keys/:id',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'Revoke an API key at once',
        params: IdParams,
        response: { 204: Type.Null(), ...errors(401, 404) },
      },
    },
    async (request, reply) => {
      await revokeApiKey(deps, userOf(request), request.params.id, clientInfo(request));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/keys/:id/rotate',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'New secret for a key; the old one keeps working for the overlap',
        params: IdParams,
        body: Type.Object(
          { overlap_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86400 })) },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Composite([IssuedApiKey, Type.Object({ previous_key_expires_at: Timestamp })]),
          ...errors(400, 401, 404, 409),
        },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await rotateApiKey(deps, userOf(request), request.params.id, request.body, clientInfo(request))),
  );

  app.post(
    '/api/keys/verify',
    {
      config: { auth: ['service'] },
      schema: {
        tags,
        summary: 'For app backends (tenant service key): is this API key good? Always 200; the outcome is in `code`',
        body: VerifyBody,
        response: { 200: VerifyResponse, ...errors(400, 401, 403) },
      },
    },
    (request) => verifyApiKey(deps, serviceOf(request).tenantId, request.body),
  );
}
