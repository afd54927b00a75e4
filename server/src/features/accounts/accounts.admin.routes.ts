import { Type } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { clientInfo } from '../../http/authenticate.js';
import { actorOf } from '../../http/principal.js';
import { type App, errors, IdParams, Page, PageQuery } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { deleteUser, getUser, importUsers, listUsers, managerOf, patchUser } from './accounts.admin.service.js';
import { AdminUserPatch, ImportUsersBody, User } from './accounts.schemas.js';

/**
 * Tenant-scoped user administration: tenant admins and operators (any tenant). Service keys may
 * read users; changing users (roles, disabling, imports) takes a person, so that a leaked backend
 * key cannot make itself an admin, and never an account above that person's role (ADR 0013).
 */
export function registerAdminUserRoutes(app: App, deps: Deps): void {
  const tags = ['admin: users'];
  const read = ['admin', 'service'] as const;
  const write = ['admin'] as const;

  app.get(
    '/api/admin/users',
    {
      config: { auth: read },
      schema: {
        tags,
        summary: 'List users of the tenant',
        querystring: Type.Composite([
          PageQuery,
          Type.Object({ email: Type.Optional(Type.String({ maxLength: 254 })) }),
        ]),
        response: { 200: Page(Type.Ref(User)), ...errors(401, 403) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      return listUsers(deps, tenant.id, {
        after: request.query.cursor,
        limit: request.query.limit,
        email: request.query.email,
      });
    },
  );

  app.get(
    '/api/admin/users/:id',
    {
      config: { auth: read },
      schema: { tags, params: IdParams, response: { 200: Type.Ref(User), ...errors(401, 403, 404) } },
    },
    async (request) => getUser(deps, (await actingTenant(deps, request)).id, request.params.id),
  );

  app.patch(
    '/api/admin/users/:id',
    {
      config: { auth: write },
      schema: {
        tags,
        summary: 'Change a user’s name, role or disabled state (disabling signs them out)',
        params: IdParams,
        body: AdminUserPatch,
        response: { 200: Type.Ref(User), ...errors(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = await actingTenant(deps, request);
      return patchUser(
        deps,
        tenant.id,
        request.params.id,
        request.body,
        managerOf(request.principal),
        clientInfo(request),
      );
    },
  );

  app.delete(
    '/api/admin/users/:id',
    {
      config: { auth: write },
      schema: {
        tags,
        summary: 'Delete a user: sessions, API keys, identities and vault connections go with them; emits user.deleted',
        params: IdParams,
        response: { 204: Type.Null(), ...errors(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      await deleteUser(deps, tenant.id, request.params.id, managerOf(request.principal), clientInfo(request));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/admin/users/import',
    {
      config: { auth: write },
      schema: {
        tags,
        summary: 'Import users with argon2id or bcrypt hashes, all or nothing',
        body: ImportUsersBody,
        response: {
          201: Type.Object({ imported: Type.Integer(), users: Type.Array(Type.Ref(User)) }),
          ...errors(400, 401, 403, 409),
        },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      return reply
        .status(201)
        .send(await importUsers(deps, tenant.id, request.body, actorOf(request.principal), clientInfo(request)));
    },
  );
}
