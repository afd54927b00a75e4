import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo, userOf } from '../../http/authenticate.js';
import { type App, errors, IdParams, NullableTimestamp, Timestamp } from '../../http/schemas.js';
import { TokenPair } from '../accounts/accounts.schemas.js';
import { listSessions, logout, logoutAll, refreshSession, revokeSession } from './sessions.service.js';

const Session = Type.Object({
  id: Type.String(),
  ip: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  created_at: Timestamp,
  last_used_at: NullableTimestamp,
  expires_at: Timestamp,
  current: Type.Boolean({ description: 'The session of the access token making this call' }),
});

export function registerSessionRoutes(app: App, deps: Deps): void {
  const tags = ['sessions'];

  app.post(
    '/api/auth/refresh',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Exchange a refresh token for a new pair (the old refresh token stops working)',
        body: Type.Object({ refresh_token: Type.String({ minLength: 1, maxLength: 512 }) }),
        response: { 200: Type.Object(TokenPair), ...errors(400, 401) },
      },
    },
    (request) => refreshSession(deps, request.body.refresh_token, clientInfo(request)),
  );

  app.post(
    '/api/auth/logout',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'End this session (API-key callers name it by refresh_token)',
        body: Type.Object(
          { refresh_token: Type.Optional(Type.String({ maxLength: 512 })) },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errors(400, 401) },
      },
    },
    async (request, reply) => {
      await logout(deps, userOf(request), request.body.refresh_token, clientInfo(request));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/auth/logout-all',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'End every session of this user (API keys keep working)',
        response: { 200: Type.Object({ sessions_revoked: Type.Integer() }), ...errors(401) },
      },
    },
    async (request) => ({ sessions_revoked: await logoutAll(deps, userOf(request), clientInfo(request)) }),
  );

  app.get(
    '/api/auth/sessions',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'Your live sessions',
        response: { 200: Type.Object({ data: Type.Array(Session) }), ...errors(401) },
      },
    },
    async (request) => ({ data: await listSessions(deps, userOf(request)) }),
  );

  app.delete(
    '/api/auth/sessions/:id',
    {
      config: { auth: ['user'] },
      schema: {
        tags,
        summary: 'Revoke one of your sessions',
        params: IdParams,
        response: { 204: Type.Null(), ...errors(401, 404) },
      },
    },
    async (request, reply) => {
      await revokeSession(deps, userOf(request), request.params.id, clientInfo(request));
      return reply.status(204).send(null);
    },
  );
}
