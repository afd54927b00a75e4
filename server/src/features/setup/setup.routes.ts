import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { type App, Email, errors, Password } from '../../http/schemas.js';
import { RegisterResponse } from '../accounts/accounts.schemas.js';
import { completeSetup } from './setup.service.js';

export function registerSetupRoutes(app: App, deps: Deps): void {
  app.post(
    '/api/setup',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['operations'],
        summary: 'Create the first operator with the one-time setup token printed at first start',
        body: Type.Object(
          {
            token: Type.String({ maxLength: 128 }),
            email: Email,
            password: Password,
            name: Type.Optional(Type.String({ maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: RegisterResponse, ...errors(400, 401, 409) },
      },
    },
    async (request, reply) => reply.status(201).send(await completeSetup(deps, request.body, clientInfo(request))),
  );
}
