import type { Kysely } from 'kysely';
import { transaction } from '../../db/index.js';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { ClientInfo, UserPrincipal } from '../../http/principal.js';
import { HasherOverloadedError, type PasswordCheck } from '../../lib/password-hasher.js';
import { createApiKey, PRIMARY_KEY_NAME, presentApiKey } from '../api-keys/api-keys.service.js';
import { recordAudit } from '../audit/audit.service.js';
import { emitEvent } from '../events/events.service.js';
import { planOfUser } from '../plans/plans.service.js';
import { revokeUserSessions, startSession } from '../sessions/sessions.service.js';
import { effectiveSettings, requireTenant } from '../tenants/tenants.service.js';
import type { Tenant } from '../tenants/tenants.types.js';
import { budgetOf, presentBudget } from '../usage/budget.service.js';
import { findUser, findUserByEmail, insertUser, type UserRow, updateUser } from './accounts.repo.js';
import { beginAttempt } from './login-guard.js';
import { checkPassword } from './password-policy.js';
import { beginSignUp } from './signup-guard.js';

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function presentUser(row: UserRow) {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    role: row.role,
    email_verified: row.email_verified_at !== null,
    disabled: row.disabled_at !== null,
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

/** Throws 400 weak_password naming what is wrong with the password. */
export async function assertPasswordAllowed(deps: Deps, tenant: Tenant, password: string, field = 'password') {
  const problems = await checkPassword(password, effectiveSettings(deps.config, tenant).passwordPolicy);
  if (problems.length > 0) {
    throw new AppError('weak_password', `${field} ${problems.join('; ')}`, {
      details: { fields: problems.map((message) => ({ field, in: 'body', message })) },
    });
  }
}

/** The policy check and the argon2id hash of a new password, refused at once under overload. */
export async function hashNewPassword(deps: Deps, tenant: Tenant, password: string): Promise<string> {
  deps.passwords.assertCapacity(tenant.id);
  await assertPasswordAllowed(deps, tenant, password);
  return deps.passwords.hash(password, tenant.id);
}

export async function register(
  deps: Deps,
  tenant: Tenant,
  input: { email: string; password: string; name?: string },
  client: ClientInfo,
  role: UserRow['role'] = 'user',
) {
  const passwordHash = await hashNewPassword(deps, tenant, input.password);
  return transaction(deps.db.kysely, (trx) =>
    insertRegistration(trx, deps, tenant, { ...input, passwordHash }, client, role),
  );
}

/**
 * The writes of a sign-up, in the caller's transaction: the user, its audit row and event, the
 * primary API key and a session. Answers as POST /api/auth/register does.
 */
export async function insertRegistration(
  trx: Kysely<Database>,
  deps: Deps,
  tenant: Tenant,
  input: { email: string; name?: string; passwordHash: string },
  client: ClientInfo,
  role: UserRow['role'],
) {
  const now = deps.clock.now();
  const user: UserRow = {
    id: deps.ids.next('usr'),
    tenant_id: tenant.id,
    email: normalizeEmail(input.email),
    name: input.name?.trim() || null,
    password_hash: input.passwordHash,
    role,
    disabled_at: null,
    email_verified_at: null,
    plan_id: null,
    last_login_at: now,
    created_at: now,
    updated_at: now,
  };
  await insertUser(trx, user);
  await recordAudit(trx, deps, {
    tenantId: tenant.id,
    action: role === 'operator' ? 'operator.created' : 'user.registered',
    actor: { type: 'user', id: user.id },
    target: { type: 'user', id: user.id },
    client,
  });
  await emitEvent(trx, deps, {
    tenantId: tenant.id,
    type: 'user.created',
    data: { user_id: user.id, email: user.email, method: 'password' },
  });
  // Seed 001: every new account gets its primary API key, shown once in this response.
  const apiKey = await createApiKey(trx, deps, {
    tenantId: tenant.id,
    userId: user.id,
    name: PRIMARY_KEY_NAME,
    scopes: [],
    expiresAt: null,
    client,
  });
  const { tokens } = await startSession(trx, deps, { tenant, userId: user.id, client });
  return { user: presentUser(user), ...tokens, api_key: { ...presentApiKey(apiKey.row), key: apiKey.key } };
}

/**
 * POST /api/auth/register: a sign-up counted against its client address first (signup-guard.ts),
 * then `register`. A sign-up refused for overload gives its count back.
 */
export async function signUp(
  deps: Deps,
  tenant: Tenant,
  input: { email: string; password: string; name?: string },
  client: ClientInfo,
) {
  const ticket = await beginSignUp(deps, client.ip);
  try {
    return await register(deps, tenant, input, client);
  } catch (error) {
    if (error instanceof HasherOverloadedError) await ticket.abandoned();
    throw error;
  }
}

const badCredentials = () => new AppError('invalid_credentials', 'Email or password is incorrect');

/**
 * Email + password sign-in. Unknown emails spend the same argon2 work as wrong passwords and get
 * the same answer (no enumeration by message, status or timing); failures feed the login guard.
 */
export async function login(
  deps: Deps,
  tenant: Tenant,
  input: { email: string; password: string },
  client: ClientInfo,
) {
  const { user, newHash } = await verifySignIn(deps, tenant, input, client);
  const now = deps.clock.now();
  return transaction(deps.db.kysely, async (trx) => {
    await updateUser(trx, tenant.id, user.id, {
      last_login_at: now,
      ...(newHash && { password_hash: newHash, updated_at: now }),
    });
    const { sessionId, tokens } = await startSession(trx, deps, { tenant, userId: user.id, client });
    await recordAudit(trx, deps, {
      tenantId: tenant.id,
      action: 'login.succeeded',
      actor: { type: 'user', id: user.id },
      target: { type: 'session', id: sessionId },
      client,
      data: newHash ? { password_hash_upgraded: true } : {},
    });
    return { ...tokens, user: presentUser({ ...user, last_login_at: now }) };
  });
}

/**
 * The password check of a sign-in, behind the login guard: the user when email and password
 * match an enabled account (and the upgraded hash when the stored one is due for it), else the
 * same 401 for unknown emails and wrong passwords (audited as login.failed).
 */
export async function verifySignIn(
  deps: Deps,
  tenant: Tenant,
  input: { email: string; password: string },
  client: ClientInfo,
): Promise<{ user: UserRow; newHash: string | undefined }> {
  deps.passwords.assertCapacity(tenant.id);
  const email = normalizeEmail(input.email);
  const attempt = { tenantId: tenant.id, email, ip: client.ip };
  const ticket = await beginAttempt(deps, attempt);
  let user: UserRow | undefined;
  let check: PasswordCheck = { ok: false, needsRehash: false };
  try {
    user = await findUserByEmail(deps.db.kysely, tenant.id, email);
    if (user?.password_hash) check = await deps.passwords.verify(user.password_hash, input.password, tenant.id);
    else await deps.passwords.verifyDummy(input.password, tenant.id);
  } catch (error) {
    await ticket.abandoned();
    throw error;
  }

  if (!user || !check.ok) {
    if (user && check.unverifiable) {
      deps.log.warn(
        { tenantId: tenant.id, userId: user.id },
        'stored password hash is outside the accepted cost bounds; not verified (reset the password or import it again)',
      );
    }
    await recordAudit(deps.db.kysely, deps, {
      tenantId: tenant.id,
      action: 'login.failed',
      actor: { type: 'anonymous', id: null },
      target: user ? { type: 'user', id: user.id } : undefined,
      client,
      data: { email, reason: !user ? 'unknown_email' : check.unverifiable ? 'unverifiable_hash' : 'wrong_password' },
    });
    throw badCredentials();
  }
  await ticket.succeeded();
  if (user.disabled_at !== null) {
    throw new AppError('account_disabled', 'This account is disabled');
  }
  // bcrypt imports and old argon2 parameters are upgraded now that we hold the password.
  return { user, newHash: check.needsRehash ? await deps.passwords.hash(input.password, tenant.id) : undefined };
}

export async function requireUser(deps: Deps, tenantId: string, userId: string): Promise<UserRow> {
  const user = await findUser(deps.db.kysely, tenantId, userId);
  if (!user) throw new AppError('not_found', 'User not found');
  return user;
}

/** What GET /api/auth/me answers: the user, their plan, and their token budget now. */
export interface MeView extends ReturnType<typeof presentUser> {
  plan: Awaited<ReturnType<typeof planOfUser>>;
  usage: Omit<ReturnType<typeof presentBudget>, 'plan'>;
}

/**
 * /me, the hottest authenticated read: served whole from the auth cache (no promise) until
 * the user, their plan or their budget changes on this instance (which forgets it), the TTL
 * passes, or the budget period ends.
 */
export function getMe(deps: Deps, principal: UserPrincipal): MeView | Promise<MeView> {
  const key = `${principal.tenantId}:${principal.userId}`;
  const hit = deps.caches.auth.peek<{ body: MeView; until: number }>('me', key);
  if (hit && hit.until > deps.clock.now()) return hit.body;
  if (hit) deps.caches.auth.forget('me', key);
  return loadMe(deps, principal, key);
}

async function loadMe(deps: Deps, principal: UserPrincipal, key: string): Promise<MeView> {
  const me = await deps.caches.auth.read('me', key, async () => {
    const row = await findUser(deps.db.kysely, principal.tenantId, principal.userId);
    if (!row) return undefined;
    const [plan, budget] = await Promise.all([planOfUser(deps, principal.tenantId, row), budgetOf(deps, principal)]);
    const { plan: _name, ...usage } = presentBudget(budget);
    return { body: { ...presentUser(row), plan, usage }, until: budget.period.end };
  });
  if (!me) throw new AppError('not_found', 'User not found');
  return me.body;
}

export async function updateMe(
  deps: Deps,
  principal: UserPrincipal,
  input: { name?: string | null },
  client: ClientInfo,
) {
  const user = await requireUser(deps, principal.tenantId, principal.userId);
  const now = deps.clock.now();
  const name = input.name === undefined ? user.name : input.name?.trim() || null;
  await transaction(deps.db.kysely, async (trx) => {
    await updateUser(trx, principal.tenantId, user.id, { name, updated_at: now });
    await recordAudit(trx, deps, {
      tenantId: principal.tenantId,
      action: 'user.updated',
      actor: { type: 'user', id: user.id },
      target: { type: 'user', id: user.id },
      client,
      data: { fields: Object.keys(input) },
    });
    await emitEvent(trx, deps, {
      tenantId: principal.tenantId,
      type: 'user.updated',
      data: { user_id: user.id, fields: Object.keys(input) },
    });
  });
  deps.caches.auth.clear();
  return presentUser({ ...user, name, updated_at: now });
}

/** Changes the password after checking the current one, and signs out every other session. */
export async function changePassword(
  deps: Deps,
  principal: UserPrincipal,
  input: { current_password: string; new_password: string },
  client: ClientInfo,
) {
  deps.passwords.assertCapacity(principal.tenantId);
  const tenant = await requireTenant(deps, principal.tenantId);
  const user = await requireUser(deps, principal.tenantId, principal.userId);
  const ticket = await beginAttempt(deps, { tenantId: tenant.id, email: user.email, ip: client.ip });
  let check: PasswordCheck = { ok: false, needsRehash: false };
  try {
    if (user.password_hash) check = await deps.passwords.verify(user.password_hash, input.current_password, tenant.id);
  } catch (error) {
    await ticket.abandoned();
    throw error;
  }
  if (!check.ok) {
    throw new AppError('invalid_credentials', 'current_password is incorrect', {
      details: { fields: [{ field: 'current_password', in: 'body', message: 'is incorrect' }] },
    });
  }
  await ticket.succeeded();
  await assertPasswordAllowed(deps, tenant, input.new_password, 'new_password');
  const hash = await deps.passwords.hash(input.new_password, tenant.id);
  const now = deps.clock.now();
  const revoked = await transaction(deps.db.kysely, async (trx) => {
    await updateUser(trx, tenant.id, user.id, { password_hash: hash, updated_at: now });
    const count = await revokeUserSessions(trx, deps, {
      tenantId: tenant.id,
      userId: user.id,
      exceptSessionId: principal.sessionId ?? undefined,
      actor: { type: 'user', id: user.id },
      client,
      reason: 'password.changed',
    });
    await recordAudit(trx, deps, {
      tenantId: tenant.id,
      action: 'password.changed',
      actor: { type: 'user', id: user.id },
      target: { type: 'user', id: user.id },
      client,
      data: { other_sessions_revoked: count },
    });
    return count;
  });
  deps.caches.auth.clear();
  return { other_sessions_revoked: revoked };
}
