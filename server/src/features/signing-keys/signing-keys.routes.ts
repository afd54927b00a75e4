import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import type { App } from '../../http/schemas.js';

export function registerSigningKeyRoutes(app: App, deps: Deps): void {
  app.get(
    '/.well-known/jwks.json',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['tokens'],
        summary: 'Public keys that verify Gatehouse access tokens (ES256), for any standard JWKS client',
        response: { 200: Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown())) }) },
      },
    },
    async (_request, reply) => {
      // Short enough that a rotation reaches verifiers well within MAX_ACCESS_TOKEN_TTL.
      reply.header('cache-control', 'public, max-age=300');
      return deps.keyring.jwks();
    },
  );
}
