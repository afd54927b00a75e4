import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import { clientInfo } from '../../http/authenticate.js';
import { type App, errors } from '../../http/schemas.js';
import { publicTenant } from '../../http/tenant.js';
import { LoginResponse } from '../accounts/accounts.schemas.js';
import { getTenantByPublishableKey } from '../tenants/tenants.service.js';
import { exchangeSignInCode, finishSignIn, startSignIn } from './sign-in.service.js';

export function registerSignInRoutes(app: App, deps: Deps): void {
  const tags = ['auth: social sign-in'];

  app.get(
    '/api/auth/oauth/:provider/start',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Send the browser here to sign in with an OAuth provider of the tenant',
        description:
          "redirect_uri must be one of the tenant's allowed_redirect_uris (exact match). The browser comes back " +
          'to it with ?code=…&state=… (or ?error=…); exchange the code at POST /api/auth/oauth/token. ' +
          'A browser cannot send headers: name the tenant with ?tenant=<publishable key> (default tenant otherwise).',
        params: Type.Object({ provider: Type.String({ maxLength: 64 }) }),
        querystring: Type.Object(
          {
            redirect_uri: Type.String({ minLength: 1, maxLength: 500 }),
            tenant: Type.Optional(Type.String({ maxLength: 100 })),
            state: Type.Optional(Type.String({ maxLength: 500, description: "The app's own state, given back" })),
            code_challenge: Type.Optional(Type.String({ minLength: 43, maxLength: 128 })),
            code_challenge_method: Type.Optional(Type.Literal('S256')),
          },
          { additionalProperties: false },
        ),
        response: { 302: Type.Null(), ...errors(400, 404) },
      },
    },
    async (request, reply) => {
      const { tenant: publishableKey, ...input } = request.query;
      const tenant = publishableKey
        ? await getTenantByPublishableKey(deps, publishableKey)
        : await publicTenant(deps, request);
      if (!tenant) throw new AppError('invalid_tenant', 'Unknown tenant: send its publishable key (pk_…) as ?tenant=');
      return reply.redirect(await startSignIn(deps, tenant, request.params.provider, input), 302);
    },
  );

  app.get(
    '/api/auth/oauth/callback',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: "The providers' redirect target for sign-in (register <PUBLIC_URL>/api/auth/oauth/callback)",
        querystring: Type.Object({
          code: Type.Optional(Type.String({ maxLength: 4096 })),
          state: Type.Optional(Type.String({ maxLength: 512 })),
          error: Type.Optional(Type.String({ maxLength: 200 })),
          error_description: Type.Optional(Type.String({ maxLength: 2000 })),
          iss: Type.Optional(Type.String({ maxLength: 500 })),
        }),
        response: { 302: Type.Null(), ...errors(400) },
      },
    },
    async (request, reply) => {
      const url = new URL(request.url, deps.config.publicUrl);
      return reply.redirect(await finishSignIn(deps, request.query, url, clientInfo(request)), 302);
    },
  );

  app.post(
    '/api/auth/oauth/token',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Exchange the one-time code from the redirect for tokens (once, within a minute)',
        body: Type.Object(
          {
            code: Type.String({ minLength: 1, maxLength: 200 }),
            redirect_uri: Type.String({ minLength: 1, maxLength: 500 }),
            code_verifier: Type.Optional(Type.String({ minLength: 43, maxLength: 128 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: LoginResponse, ...errors(400, 403) },
      },
    },
    async (request) => exchangeSignInCode(deps, await publicTenant(deps, request), request.body, clientInfo(request)),
  );
}
