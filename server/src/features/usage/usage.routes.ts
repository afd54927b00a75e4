import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { userOf } from '../../http/authenticate.js';
import { type App, errors, IdParams } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { reachOf, requireManageableUser } from '../accounts/accounts.admin.service.js';
import { getMe } from '../accounts/accounts.service.js';
import { presentBudget, releaseReservation, reserveTokens, settleReservation } from './budget.service.js';
import { Reservation, SettleBody, TenantUsage, TokenBudget, UsageSummary } from './usage.schemas.js';
import { MICROS, ownerOfReservation, ownerOfUser, tenantUsage, usageSummary } from './usage.service.js';

export function registerUsageRoutes(app: App, deps: Deps): void {
  app.get(
    '/api/usage',
    {
      // Reading what is left must work when nothing is left (as GitHub's /rate_limit).
      config: { auth: ['user'], metered: false },
      schema: {
        tags: ['usage'],
        summary: 'Your usage this period: tokens used and left, limits now, totals and per day',
        response: { 200: UsageSummary, ...errors(401) },
      },
    },
    (request) => usageSummary(deps, userOf(request)),
  );

  app.get(
    '/api/auth/vscode-config',
    {
      config: { auth: ['user'] },
      schema: {
        tags: ['usage'],
        summary: "Seed 001's editor configuration: where to call and what is left (never a provider key)",
        response: {
          200: Type.Object({
            api_endpoint: Type.String(),
            llm_base_url: Type.String({ description: 'OpenAI-compatible base URL for the LLM gateway' }),
            user: Type.Composite([
              Type.Object({ id: Type.String(), email: Type.String(), subscription: Type.String() }),
              TokenBudget,
            ]),
          }),
          ...errors(401),
        },
      },
    },
    async (request) => {
      const principal = userOf(request);
      const me = await getMe(deps, principal);
      return {
        api_endpoint: deps.config.publicUrl,
        llm_base_url: `${deps.config.publicUrl}/api/llm/v1`,
        user: { id: me.id, email: me.email, subscription: me.plan.name, ...me.usage },
      };
    },
  );

  app.get(
    '/api/admin/usage',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags: ['admin: usage'],
        summary: "The tenant's usage in a time range: totals, per user, per model and a time series",
        querystring: Type.Object({
          from: Type.Optional(Type.String({ description: 'ISO 8601; default: start of this month (UTC)' })),
          to: Type.Optional(Type.String({ description: 'ISO 8601, exclusive; default: end of the current bucket' })),
          granularity: Type.Optional(Type.Union([Type.Literal('hour'), Type.Literal('day')], { default: 'day' })),
          user_id: Type.Optional(Type.String({ maxLength: 64 })),
        }),
        response: { 200: TenantUsage, ...errors(400, 401, 403) },
      },
    },
    async (request) => tenantUsage(deps, (await actingTenant(deps, request)).id, request.query),
  );

  app.get(
    '/api/admin/users/:id/usage',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags: ['admin: usage'],
        summary: "A user's usage this period (what GET /api/usage shows them)",
        params: IdParams,
        response: { 200: UsageSummary, ...errors(401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      return usageSummary(deps, await ownerOfUser(deps, tenant.id, request.params.id));
    },
  );

  const tags = ['admin: token reservations'];
  app.post(
    '/api/admin/usage/reservations',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags,
        summary:
          "Hold tokens of a user's budget before a call your backend makes (429 quota_exceeded if they do not fit)",
        body: Type.Object(
          {
            user_id: Type.String({ maxLength: 64 }),
            tokens: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
            ttl_seconds: Type.Optional(
              Type.Integer({ minimum: 1, maximum: 86_400, description: 'Default: TOKEN_RESERVATION_TTL' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: Reservation, ...errors(400, 401, 403, 404, 429) },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      const { user_id, tokens, ttl_seconds } = request.body;
      // Not against the budget of an account above the caller's reach (ADR 0013).
      await requireManageableUser(deps, tenant.id, user_id, reachOf(request.principal));
      const owner = await ownerOfUser(deps, tenant.id, user_id);
      const { reservation, budget } = await reserveTokens(deps, owner, tokens, {
        ttlMs: ttl_seconds === undefined ? undefined : ttl_seconds * 1000,
      });
      return reply.status(201).send({
        id: reservation.id,
        user_id,
        tokens: reservation.tokens,
        expires_at: new Date(reservation.expires_at).toISOString(),
        budget: presentBudget(budget),
      });
    },
  );

  app.post(
    '/api/admin/usage/reservations/:id/settle',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags,
        summary: 'Charge what the call used (prompt + completion tokens), free the rest, record the usage event',
        params: IdParams,
        body: SettleBody,
        response: { 200: Type.Ref(TokenBudget), ...errors(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      const owner = await ownerOfReservation(deps, tenant.id, request.params.id);
      const body = request.body;
      const budget = await settleReservation(deps, owner, request.params.id, {
        kind: 'llm',
        model: body.model,
        provider: body.provider,
        promptTokens: body.prompt_tokens,
        completionTokens: body.completion_tokens,
        costMicros: Math.round((body.cost_usd ?? 0) * MICROS),
        latencyMs: body.latency_ms,
        status: body.status ?? 'ok',
      });
      return presentBudget(budget);
    },
  );

  app.post(
    '/api/admin/usage/reservations/:id/release',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags,
        summary: 'Free all of a reservation (the call was not made)',
        params: IdParams,
        response: { 200: Type.Ref(TokenBudget), ...errors(401, 403, 404, 409) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      const owner = await ownerOfReservation(deps, tenant.id, request.params.id);
      return presentBudget(await releaseReservation(deps, owner, request.params.id));
    },
  );
}
