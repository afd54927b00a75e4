import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { invalidField } from '../../errors.js';
import { clientInfo, userOf } from '../../http/authenticate.js';
import { type App, errors } from '../../http/schemas.js';
import { publicTenant } from '../../http/tenant.js';
import {
  ChangePasswordBody,
  LoginBody,
  LoginResponse,
  Me,
  RegisterBody,
  RegisterResponse,
  UpdateMeBody,
  User,
} from './accounts.schemas.js';
import { changePassword, getMe, login, signUp, updateMe } from './accounts.service.js';

export function registerAccountRoutes(app: App, deps: Deps): void {
  const tags = ['accounts'];

  app.post(
    '/api/auth/register',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Create an account; returns tokens and the primary API key (shown once)',
        description:
          'Limited per client address (SIGNUP_LIMIT_PER_IP an hour, over all tenants): 429 rate_limited with Retry-After beyond it.',
        body: RegisterBody,
        response: { 201: RegisterResponse, ...errors(400, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      const tenant = await publicTenant(deps, request);
      return reply.status(201).send(await signUp(deps, tenant, request.body, clientInfo(request)));
    },
  );

  app.post(
    '/api/auth/login',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Sign in with JSON {email, password} or form-encoded username/password',
        body: LoginBody,
        response: { 200: LoginResponse, ...errors(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const email = request.body.email ?? request.body.username;
      if (!email) {
        throw invalidField('email', 'is required (or username, form-encoded)', {
          summary: 'Invalid request: email is required',
        });
      }
      const tenant = await publicTenant(deps, request);
      return login(deps, tenant, { email, password: request.body.password }, clientInfo(request));
    },
  );

  app.get(
    '/api/auth/me',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'The signed-in user, with their plan and token budget',
        response: { 200: Me, ...errors(401) },
      },
    },
    (request) => getMe(deps, userOf(request)),
  );

  app.patch(
    '/api/auth/me',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'Update your profile',
        body: UpdateMeBody,
        response: { 200: Type.Ref(User), ...errors(400, 401) },
      },
    },
    (request) => updateMe(deps, userOf(request), request.body, clientInfo(request)),
  );

  app.post(
    '/api/auth/password',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'Change your password; signs out every other session',
        body: ChangePasswordBody,
        response: { 200: Type.Object({ other_sessions_revoked: Type.Integer() }), ...errors(400, 401, 429, 503) },
      },
    },
    (request) => changePassword(deps, userOf(request), request.body, clientInfo(request)),
  );
}
