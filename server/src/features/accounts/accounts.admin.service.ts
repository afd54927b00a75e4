import type { Static } from '@sinclair/typebox';
import { transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError, notFound } from '../../errors.js';
import { type Actor, actorOf, type ClientInfo, type Principal } from '../../http/principal.js';
import { recordAudit } from '../audit/audit.service.js';
import { emitEvent } from '../events/events.service.js';
import { revokeUserSessions } from '../sessions/sessions.service.js';
import { findUser, insertUser, listUsers as listRows, type UserRow, updateUser } from './accounts.repo.js';
import type { AdminUserPatch, ImportUsersBody } from './accounts.schemas.js';
import { normalizeEmail, presentUser } from './accounts.service.js';

/** Who acts on an account through the admin API: the audit actor and their role. */
export interface Manager {
  actor: Actor;
  role: UserRow['role'];
}

/** The manager behind an admin route's principal (admin routes take people, not service keys). */
export function managerOf(principal: Principal | null): Manager {
  if (principal?.kind !== 'user') throw new AppError('forbidden', 'Changing accounts takes an admin');
  return { actor: actorOf(principal), role: principal.role };
}

/**
 * How far a credential reaches over other accounts: a person as far as their role; a tenant
 * service key (which a tenant admin creates) as far as an admin, never to an operator.
 */
export function reachOf(principal: Principal | null): Manager {
  if (principal?.kind === 'service') return { actor: actorOf(principal), role: 'admin' };
  return managerOf(principal);
}

const RANK: Record<UserRow['role'], number> = { user: 0, admin: 1, operator: 2 };

/**
 * A tenant admin is not trusted above their own role (DESIGN; ADR 0013): they act on users and on
 * other admins of their tenant, never on an operator. Throws 403 naming why.
 */
export function assertMayManage(manager: Manager, target: UserRow): void {
  if (RANK[target.role] > RANK[manager.role]) {
    throw new AppError(
      'forbidden',
      `This account is ${target.role === 'operator' ? 'an operator' : 'an admin'}, above your role`,
    );
  }
}

/** The account `id` of the tenant, when `manager` may act on it (404 when there is none, 403 when above them). */
export async function requireManageableUser(deps: Deps, tenantId: string, id: string, manager: Manager) {
  const user = await findUser(deps.db.kysely, tenantId, id);
  if (!user) throw notFound('User');
  assertMayManage(manager, user);
  return user;
}

export async function listUsers(deps: Deps, tenantId: string, page: { after?: string; limit: number; email?: string }) {
  const rows = await listRows(deps.db.kysely, tenantId, {
    after: page.after,
    limit: page.limit + 1,
    email: page.email ? normalizeEmail(page.email) : undefined,
  });
  const data = rows.slice(0, page.limit);
  return { data: data.map(presentUser), next_cursor: rows.length > page.limit ? (data.at(-1)?.id ?? null) : null };
}

export async function getUser(deps: Deps, tenantId: string, id: string) {
  const row = await findUser(deps.db.kysely, tenantId, id);
  if (!row) throw notFound('User');
  return presentUser(row);
}

/** Changes name, role (user/admin) or disabled state; disabling signs the user out everywhere. */
export async function patchUser(
  deps: Deps,
  tenantId: string,
  id: string,
  input: Static<typeof AdminUserPatch>,
  manager: Manager,
  client: ClientInfo,
) {
  const { actor } = manager;
  const user = await requireManageableUser(deps, tenantId, id, manager);
  if (user.role === 'operator' && (input.role !== undefined || input.disabled)) {
    throw new AppError('forbidden', 'Operators are managed with the gatehouse CLI');
  }
  const now = deps.clock.now();
  const changes: Partial<UserRow> = { updated_at: now };
  if (input.name !== undefined) changes.name = input.name?.trim() || null;
  if (input.role !== undefined) changes.role = input.role;
  if (input.disabled !== undefined) changes.disabled_at = input.disabled ? (user.disabled_at ?? now) : null;
  await transaction(deps.db.kysely, async (trx) => {
    await updateUser(trx, tenantId, id, changes);
    if (input.disabled) {
      await revokeUserSessions(trx, deps, { tenantId, userId: id, actor, client, reason: 'user.disabled' });
    }
    await emitEvent(trx, deps, { tenantId, type: 'user.updated', data: { user_id: id, fields: Object.keys(input) } });
    await recordAudit(trx, deps, {
      tenantId,
      action: 'user.updated',
      actor,
      target: { type: 'user', id },
      client,
      data: {
        fields: Object.keys(input),
        ...(input.role && { role: input.role }),
        ...(input.disabled !== undefined && { disabled: input.disabled }),
      },
    });
  });
  deps.caches.auth.clear();
  return presentUser({ ...user, ...changes });
}

/**
 * Deletes a user and everything that lets anyone act as them or read their secrets: sessions
 * and refresh tokens, API keys, linked sign-in identities, pending sign-ins, vault connections,
 * budgets and reservations, all in one transaction with the `user.deleted` event (their live
 * connections close on it). Usage records and the audit log keep the id, which names no one,
 * for accounting and security history.
 */
export async function deleteUser(deps: Deps, tenantId: string, id: string, manager: Manager, client: ClientInfo) {
  const { actor } = manager;
  const user = await requireManageableUser(deps, tenantId, id, manager);
  if (user.role === 'operator') throw new AppError('forbidden', 'Operators are managed with the gatehouse CLI');
  if (actor.type === 'user' && actor.id === id) {
    throw new AppError('forbidden', 'An admin cannot delete their own account; ask another admin');
  }
  await transaction(deps.db.kysely, async (trx) => {
    // Locks the user's row first (PostgreSQL): a sign-in racing the delete waits, then fails,
    // instead of adding a session that would break the delete's foreign keys halfway.
    await trx
      .updateTable('users')
      .set({ updated_at: deps.clock.now() })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .execute();
    await trx
      .deleteFrom('refresh_tokens')
      .where(
        'session_id',
        'in',
        trx.selectFrom('sessions').select('id').where('tenant_id', '=', tenantId).where('user_id', '=', id),
      )
      .execute();
    // Table by table: Kysely's types do not follow a loop over a union of tables.
    await trx.deleteFrom('sessions').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('api_keys').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('user_identities').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('connections').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('oauth_codes').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('oauth_states').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('token_reservations').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('token_budgets').where('tenant_id', '=', tenantId).where('user_id', '=', id).execute();
    await trx.deleteFrom('users').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
    await emitEvent(trx, deps, { tenantId, type: 'user.deleted', data: { user_id: id } });
    await recordAudit(trx, deps, { tenantId, action: 'user.deleted', actor, target: { type: 'user', id }, client });
  });
  deps.caches.auth.clear();
}

/**
 * Imports accounts from another system in one transaction: all or nothing. bcrypt hashes are
 * accepted as they are and upgraded to argon2id at each user's next sign-in; hashes that would cost
 * more to verify than HASH_COST_BOUNDS allow are refused, naming the field.
 */
export async function importUsers(
  deps: Deps,
  tenantId: string,
  input: Static<typeof ImportUsersBody>,
  actor: Actor,
  client: ClientInfo,
) {
  const seen = new Set<string>();
  const problems: { field: string; in: string; message: string }[] = [];
  input.users.forEach((user, index) => {
    const email = normalizeEmail(user.email);
    if (seen.has(email))
      problems.push({ field: `users.${index}.email`, in: 'body', message: 'appears twice in this import' });
    seen.add(email);
    // Bounded cost: the hash's parameters are the importer's choice, its verification our cost.
    const hashProblem = user.password_hash === undefined ? null : deps.passwords.importProblem(user.password_hash);
    if (hashProblem !== null)
      problems.push({ field: `users.${index}.password_hash`, in: 'body', message: hashProblem });
  });
  if (problems.length > 0) {
    throw new AppError(
      'validation_failed',
      `Invalid import: ${problems.map((p) => `${p.field} ${p.message}`).join('; ')}`,
      {
        details: { fields: problems },
      },
    );
  }
  const now = deps.clock.now();
  const rows: UserRow[] = input.users.map((user) => ({
    id: deps.ids.next('usr'),
    tenant_id: tenantId,
    email: normalizeEmail(user.email),
    name: user.name?.trim() || null,
    password_hash: user.password_hash ?? null,
    role: 'user',
    disabled_at: null,
    email_verified_at: user.email_verified ? now : null,
    plan_id: null,
    last_login_at: null,
    created_at: now,
    updated_at: now,
  }));
  await transaction(deps.db.kysely, async (trx) => {
    for (const [index, row] of rows.entries()) {
      try {
        await insertUser(trx, row);
      } catch (error) {
        if (error instanceof AppError && error.code === 'email_taken') {
          throw new AppError('email_taken', `users.${index}.email already has an account; nothing was imported`, {
            details: { fields: [{ field: `users.${index}.email`, in: 'body', message: 'already has an account' }] },
          });
        }
        throw error;
      }
    }
    await recordAudit(trx, deps, { tenantId, action: 'user.imported', actor, client, data: { count: rows.length } });
  });
  return { imported: rows.length, users: rows.map(presentUser) };
}
