import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { Deps } from '../../deps.js';
import { AppError, notFound } from '../../errors.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, IdParams, Nullable, Page, PageQuery, Timestamp } from '../../http/schemas.js';
import { createTenant, effectiveSettings, listTenants, requireTenant, updateTenant } from './tenants.service.js';
import type { Tenant } from './tenants.types.js';

const PasswordPolicy = Type.Object(
  {
    min_length: Type.Optional(Type.Integer({ minimum: 8, maximum: 128 })),
    max_length: Type.Optional(Type.Integer({ minimum: 64, maximum: 1024 })),
    block_common: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const Origin = Type.String({ pattern: '^https?://[^/\\s]+$', maxLength: 255, description: 'scheme://host[:port]' });

const MAX_REFRESH_SECONDS = 5 * 366 * 86_400;

const settingsFields = {
  // Upper bounds keep every computed expiry a valid date; MAX_ACCESS_TOKEN_TTL is checked too.
  access_token_ttl_seconds: Type.Integer({ minimum: 60, maximum: 30 * 86_400 }),
  refresh_token_idle_ttl_seconds: Type.Integer({ minimum: 60, maximum: MAX_REFRESH_SECONDS }),
  refresh_token_absolute_ttl_seconds: Type.Integer({ minimum: 60, maximum: MAX_REFRESH_SECONDS }),
  allowed_origins: Type.Array(Origin, { maxItems: 100 }),
  allowed_redirect_uris: Type.Array(Type.String({ format: 'uri', maxLength: 500 }), {
    maxItems: 100,
    description: 'Exact URIs a browser may return to after an OAuth flow (vault connect, social sign-in)',
  }),
  password_policy: PasswordPolicy,
};

const SettingsInput = Type.Partial(Type.Object(settingsFields), { additionalProperties: false });

/** PATCH semantics: a field set to null goes back to the instance default. */
const SettingsPatch = Type.Object(
  {
    access_token_ttl_seconds: Type.Optional(Nullable(settingsFields.access_token_ttl_seconds)),
    refresh_token_idle_ttl_seconds: Type.Optional(Nullable(settingsFields.refresh_token_idle_ttl_seconds)),
    refresh_token_absolute_ttl_seconds: Type.Optional(Nullable(settingsFields.refresh_token_absolute_ttl_seconds)),
    allowed_origins: Type.Optional(Nullable(settingsFields.allowed_origins)),
    allowed_redirect_uris: Type.Optional(Nullable(settingsFields.allowed_redirect_uris)),
    password_policy: Type.Optional(Nullable(PasswordPolicy)),
  },
  { additionalProperties: false },
);

const TenantBody = Type.Object(
  {
    id: Type.String(),
    slug: Type.String(),
    name: Type.String(),
    publishable_key: Type.String({ description: 'Send as X-Gatehouse-Tenant on unauthenticated calls; not a secret' }),
    settings: Type.Object({
      access_token_ttl_seconds: Type.Integer(),
      refresh_token_idle_ttl_seconds: Type.Integer(),
      refresh_token_absolute_ttl_seconds: Type.Integer(),
      allowed_origins: Type.Array(Type.String()),
      allowed_redirect_uris: Type.Array(Type.String()),
      password_policy: Type.Object({
        min_length: Type.Integer(),
        max_length: Type.Integer(),
        block_common: Type.Boolean(),
      }),
    }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Tenant' },
);

export function registerTenantRoutes(app: App, deps: Deps): void {
  const tags = ['admin: tenants'];

  const present = (tenant: Tenant) => {
    const s = effectiveSettings(deps.config, tenant);
    return {
      id: tenant.id,
      slug: tenant.slug,
      name: tenant.name,
      publishable_key: tenant.publishableKey,
      settings: {
        access_token_ttl_seconds: s.accessTtlMs / 1000,
        refresh_token_idle_ttl_seconds: s.refreshIdleTtlMs / 1000,
        refresh_token_absolute_ttl_seconds: s.refreshAbsoluteTtlMs / 1000,
        allowed_origins: s.allowedOrigins,
        allowed_redirect_uris: s.allowedRedirectUris,
        password_policy: {
          min_length: s.passwordPolicy.minLength,
          max_length: s.passwordPolicy.maxLength,
          block_common: s.passwordPolicy.blockCommon,
        },
      },
      created_at: new Date(tenant.createdAt).toISOString(),
      updated_at: new Date(tenant.updatedAt).toISOString(),
    };
  };

  /** Operators see every tenant; a tenant admin sees only their own (others are 404, DESIGN). */
  const visibleTenant = async (request: FastifyRequest, id: string) => {
    const principal = request.principal;
    const isOperator = principal?.kind === 'user' && principal.role === 'operator';
    if (!isOperator && principal?.tenantId !== id) throw notFound('Tenant');
    return requireTenant(deps, id);
  };

  app.get(
    '/api/admin/tenants',
    {
      config: { auth: ['operator'] },
      schema: { tags, querystring: PageQuery, response: { 200: Page(Type.Ref(TenantBody)), ...errors(401, 403) } },
    },
    async (request) => {
      const page = await listTenants(deps, { after: request.query.cursor, limit: request.query.limit });
      return { data: page.data.map(present), next_cursor: page.nextCursor };
    },
  );

  app.post(
    '/api/admin/tenants',
    {
      config: { auth: ['operator'] },
      schema: {
        tags,
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 200 }),
            slug: Type.Optional(Type.String({ minLength: 1, maxLength: 48 })),
            settings: Type.Optional(SettingsInput),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Ref(TenantBody), ...errors(400, 401, 403, 409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(present(await createTenant(deps, actorOf(request.principal), request.body))),
  );

  app.get(
    '/api/admin/tenants/:id',
    {
      config: { auth: ['admin', 'service'] },
      schema: { tags, params: IdParams, response: { 200: Type.Ref(TenantBody), ...errors(401, 403, 404) } },
    },
    async (request) => present(await visibleTenant(request, request.params.id)),
  );

  app.patch(
    '/api/admin/tenants/:id',
    {
      config: { auth: ['admin'] },
      schema: {
        tags,
        summary: 'Rename a tenant or change its settings (null resets a setting to the default)',
        params: IdParams,
        body: Type.Object(
          {
            name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            settings: Type.Optional(SettingsPatch),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Ref(TenantBody), ...errors(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = await visibleTenant(request, request.params.id);
      if (Object.keys(request.body).length === 0)
        throw new AppError('validation_failed', 'Nothing to change: send name or settings');
      return present(await updateTenant(deps, actorOf(request.principal), tenant.id, request.body));
    },
  );
}

export { TenantBody };
