import { sql } from 'kysely';
import { json, transaction } from '../../db/index.js';
import type { ConnectionTable } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import { SYSTEM_ACTOR } from '../../http/principal.js';
import { safeEqual, sha256 } from '../../lib/tokens.js';
import { findUser } from '../accounts/accounts.repo.js';
import { emitEvent } from '../events/events.service.js';
import { exchangeCode, grantRejected, reason, refreshTokens, revokeToken, type Tokens } from '../oauth/oauth-client.js';
import { findOAuthProviderById, type OAuthProviderRow } from '../oauth/oauth-providers.repo.js';
import { checkExtraParams, requireOAuthProvider } from '../oauth/oauth-providers.service.js';
import { beginAuthorization, checkRedirect, findLiveState, takeState } from '../oauth/oauth-states.js';
import { getTenant } from '../tenants/tenants.service.js';
import type { ConnectionRow } from './connections.repo.js';
import { openAuthData, saveAuth, sealAuthData, type VaultOwner } from './vault.service.js';

// OAuth connections in the vault: the auth link (state + PKCE), the callback that stores the
// tokens, refresh before expiry with one refresh in flight per connection across instances, and
// revocation at the provider.

/** How long one instance may hold a connection's refresh before another may take it over. */
const REFRESH_LOCK_MS = 30_000;

export const callbackUrl = (deps: Deps) => `${deps.config.publicUrl}/api/vault/callback`;

/** Gatehouse's link page for a connect state: the link people get (see vault-connect.routes.ts). */
export const connectLinkUrl = (deps: Deps, state: string) =>
  `${deps.config.publicUrl}/vault/connect?state=${encodeURIComponent(state)}`;

/**
 * sendAuthLink: a link for the owner's connection to `service` (its OAuth provider). The link is
 * Gatehouse's own page, not the provider's authorization URL: the page binds the flow to the
 * browser that continues from it (docs/adr/0017), and the callback requires that browser.
 */
export async function startConnect(
  deps: Deps,
  owner: VaultOwner,
  input: { service: string; redirect_after?: string; scopes?: string[]; config?: Record<string, string> },
) {
  const provider = await requireOAuthProvider(deps, owner.tenantId, input.service).catch(() => {
    throw invalidField('service', `has no OAuth provider here; add one under /api/admin/oauth/providers`);
  });
  checkExtraParams('config', input.config);
  await checkRedirect(deps, owner.tenantId, 'redirect_after', input.redirect_after);
  const scopes = input.scopes ?? json.read<string[]>(provider.scopes, []);
  const started = await beginAuthorization(deps, provider, {
    purpose: 'connect',
    callbackUrl: callbackUrl(deps),
    scopes,
    extra: { ...json.read<Record<string, string>>(provider.extra_params, {}), ...input.config },
    owner: owner.owner,
    userId: owner.userId,
    redirectAfter: input.redirect_after ?? null,
    keepUrl: true,
  });
  return {
    url: connectLinkUrl(deps, started.state),
    state: started.state,
    expires_at: new Date(started.expiresAt).toISOString(),
  };
}

/** What the link page shows and needs: whose connection to which service in which tenant, and where it goes on. */
export async function describeConnectLink(deps: Deps, state: string) {
  const found = await findLiveState(deps, state, 'connect');
  if (!found?.url) return undefined;
  const { row, url } = found;
  const [provider, tenant, user] = await Promise.all([
    findOAuthProviderById(deps.db.kysely, row.provider_id),
    getTenant(deps, row.tenant_id),
    row.user_id ? findUser(deps.db.kysely, row.tenant_id, row.user_id) : undefined,
  ]);
  if (!provider || !tenant) return undefined;
  return {
    stateId: row.id,
    binding: row.browser_binding,
    authorizeUrl: url,
    service: provider.name,
    tenant: tenant.name,
    /** Whose connection: a Gatehouse user's email, else the app's own id for its user. */
    ownerEmail: user?.email ?? null,
    owner: row.owner ?? '',
  };
}

/** The token response as stored: OAuth2's fields, with an absolute expiry. */
function authDataOf(deps: Deps, tokens: Tokens, previous?: Record<string, unknown>) {
  const now = deps.clock.now();
  const data: Record<string, unknown> = { ...tokens };
  // A provider that does not rotate refresh tokens sends none on refresh: keep the one we have.
  if (data.refresh_token === undefined && previous?.refresh_token !== undefined)
    data.refresh_token = previous.refresh_token;
  const expiresAt = typeof tokens.expires_in === 'number' ? now + tokens.expires_in * 1000 : null;
  if (expiresAt !== null) data.expires_at = new Date(expiresAt).toISOString();
  return { data, expiresAt };
}

/**
 * GET /api/vault/callback: the provider's redirect; stores the tokens and says where the browser
 * goes next. Only in the browser the link page bound the state to (`browserSecret`, its cookie):
 * an authorization response arriving in any other browser is refused and stores nothing, so a link
 * cannot be completed by someone else into its creator's vault (RFC 9700 §4.7: the state is bound
 * to the user agent). The state is used up either way.
 */
export async function finishConnect(
  deps: Deps,
  query: { code?: string; state?: string; error?: string },
  url: URL,
  browserSecret: string | undefined,
) {
  const { row, provider, codeVerifier } = await takeState(deps, query.state, 'connect');
  if (!row.browser_binding || !browserSecret || !safeEqual(sha256(browserSecret), row.browser_binding)) {
    deps.log.warn({ tenant: row.tenant_id, service: provider.name }, 'vault: a connect callback in another browser');
    throw new AppError(
      'invalid_request',
      'This connection was not started in this browser: nothing was stored. Open the link again, in the browser that will finish it.',
    );
  }
  const owner: VaultOwner = { tenantId: row.tenant_id, owner: row.owner ?? '', userId: row.user_id };
  const back = (params: Record<string, string>) => {
    if (!row.redirect_after) return null;
    const target = new URL(row.redirect_after);
    for (const [key, value] of Object.entries(params)) target.searchParams.set(key, value);
    return target.href;
  };
  if (query.error) {
    return {
      redirect: back({ service: provider.name, error: query.error }),
      service: provider.name,
      error: query.error,
    };
  }
  const { tokens } = await exchangeCode(deps, provider, url, { state: query.state ?? '', codeVerifier });
  const { data, expiresAt } = authDataOf(deps, tokens);
  await saveAuth(
    deps,
    owner,
    provider.name,
    { auth_data: data, expires_at: expiresAt === null ? null : new Date(expiresAt).toISOString() },
    SYSTEM_ACTOR,
    { ip: null, userAgent: null },
    provider.id,
  );
  return { redirect: back({ service: provider.name, status: 'connected' }), service: provider.name, error: null };
}

/** Refreshes in flight on this instance, by connection: concurrent callers share one. */
const inflight = new WeakMap<Deps, Map<string, Promise<ConnectionRow>>>();

/**
 * Whether a connection should be refreshed now: an OAuth one, active, expiring within
 * VAULT_REFRESH_SKEW and past half its token's lifetime (counted from when it was stored), so a
 * provider's 60-second tokens are not refreshed at every read while a 5-minute skew would have them due.
 */
export function refreshDue(deps: Deps, row: ConnectionRow): boolean {
  if (row.provider_id === null || row.status !== 'active' || row.expires_at === null) return false;
  const now = deps.clock.now();
  return row.expires_at - deps.config.vault.refreshSkewMs <= now && row.expires_at + row.updated_at <= 2 * now;
}

/**
 * Refreshes a connection's tokens; exactly one refresh in flight per connection across all
 * instances. On this instance concurrent callers share one promise; across instances the first
 * to set `refresh_lock_until` refreshes and the others wait for its result (they poll the row).
 * A provider that rejects the refresh token marks the connection `needs_reauth` and emits
 * `connection.refresh_failed`; other failures back off (30 s doubling to 1 h).
 */
export function refreshConnection(deps: Deps, row: ConnectionRow): Promise<ConnectionRow> {
  let mine = inflight.get(deps);
  if (!mine) {
    mine = new Map();
    inflight.set(deps, mine);
  }
  const running = mine.get(row.id);
  if (running) return running;
  const started = refreshOnce(deps, row).finally(() => mine.delete(row.id));
  mine.set(row.id, started);
  return started;
}

async function refreshOnce(deps: Deps, seen: ConnectionRow): Promise<ConnectionRow> {
  const db = deps.db.kysely;
  const deadline = Date.now() + REFRESH_LOCK_MS + 5_000;
  for (;;) {
    const now = deps.clock.now();
    const locked = await db
      .updateTable('connections')
      .set({ refresh_lock_until: now + REFRESH_LOCK_MS })
      .where('id', '=', seen.id)
      .where('updated_at', '=', seen.updated_at)
      .where((eb) => eb.or([eb('refresh_lock_until', 'is', null), eb('refresh_lock_until', '<', now)]))
      .returningAll()
      .executeTakeFirst();
    if (locked) return refreshLocked(deps, locked);
    // Someone else refreshed it already (updated_at moved) or is refreshing it: wait for their result.
    const current = await db.selectFrom('connections').selectAll().where('id', '=', seen.id).executeTakeFirst();
    if (!current) throw new AppError('not_found', 'Connection not found');
    if (current.updated_at !== seen.updated_at || current.status !== 'active') return current;
    if (Date.now() > deadline)
      throw new AppError('upstream_unavailable', 'The connection is being refreshed elsewhere; try again');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function refreshLocked(deps: Deps, row: ConnectionRow): Promise<ConnectionRow> {
  const db = deps.db.kysely;
  const provider = row.provider_id ? await findOAuthProviderById(deps.db.kysely, row.provider_id) : undefined;
  const previous = (await openAuthData(deps, row)) as Record<string, unknown>;
  const refreshToken = typeof previous?.refresh_token === 'string' ? previous.refresh_token : null;
  const unlock = { refresh_lock_until: null };
  if (!provider || !refreshToken) {
    return fail(
      deps,
      row,
      provider,
      'needs_reauth',
      provider ? 'no refresh token was issued' : 'its OAuth provider is gone',
    );
  }
  let tokens: Tokens;
  try {
    tokens = await refreshTokens(deps, provider, refreshToken);
  } catch (error) {
    return fail(deps, row, provider, grantRejected(error) ? 'needs_reauth' : 'backoff', reason(error));
  }
  const { data, expiresAt } = authDataOf(deps, tokens, previous);
  const owner: VaultOwner = { tenantId: row.tenant_id, owner: row.owner, userId: row.user_id };
  const { sealed, version } = await sealAuthData(deps, owner, row.service, data);
  const now = deps.clock.now();
  const updated = await db
    .updateTable('connections')
    .set({
      ...unlock,
      auth_data_sealed: sealed,
      key_version: version,
      expires_at: expiresAt,
      updated_at: Math.max(now, row.updated_at + 1),
      refresh_failures: 0,
      next_refresh_at: null,
      last_error: null,
    })
    .where('id', '=', row.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return updated;
}

/** Records a failed refresh: `needs_reauth` (and the event), or a backoff; the lock is released. */
async function fail(
  deps: Deps,
  row: ConnectionRow,
  provider: OAuthProviderRow | undefined,
  outcome: 'needs_reauth' | 'backoff',
  why: string,
): Promise<never> {
  const now = deps.clock.now();
  const failures = row.refresh_failures + 1;
  await transaction(deps.db.kysely, async (trx) => {
    const changes: Partial<ConnectionTable> = { refresh_lock_until: null, refresh_failures: failures, last_error: why };
    if (outcome === 'needs_reauth') changes.status = 'needs_reauth';
    else changes.next_refresh_at = now + Math.min(3_600_000, 30_000 * 2 ** (failures - 1));
    await trx.updateTable('connections').set(changes).where('id', '=', row.id).execute();
    if (outcome === 'needs_reauth') {
      await emitEvent(trx, deps, {
        tenantId: row.tenant_id,
        type: 'connection.refresh_failed',
        data: { service: row.service, user_id: row.owner, reason: why, needs_reauthorization: true },
      });
    }
  });
  deps.log.warn({ connection: row.id, provider: provider?.name, outcome, reason: why }, 'vault: refresh failed');
  if (outcome === 'needs_reauth') {
    throw new AppError('conflict', `The ${row.service} connection needs to be authorized again (${why})`, {
      details: { status: 'needs_reauth', reason: why },
    });
  }
  throw new AppError('upstream_unavailable', `${row.service} could not refresh the connection (${why})`, {
    details: { retry_at: new Date(now + Math.min(3_600_000, 30_000 * 2 ** (failures - 1))).toISOString() },
  });
}

/** Best effort: tells the provider to revoke the tokens before the connection is forgotten. */
export async function revokeAtProvider(deps: Deps, row: ConnectionRow): Promise<boolean> {
  if (!row.provider_id) return false;
  const provider = await findOAuthProviderById(deps.db.kysely, row.provider_id);
  if (!provider?.revocation_endpoint) return false;
  try {
    const data = (await openAuthData(deps, row)) as Record<string, unknown>;
    const token = data?.refresh_token ?? data?.access_token;
    if (typeof token !== 'string') return false;
    await revokeToken(deps, provider, token);
    return true;
  } catch (error) {
    deps.log.warn({ connection: row.id, reason: reason(error) }, 'vault: revocation at the provider failed');
    return false;
  }
}

/** The background refresher: active OAuth connections due within the skew, not backing off, a batch at a time. */
export async function refreshDueConnections(deps: Deps): Promise<number> {
  const now = deps.clock.now();
  const rows = await deps.db.kysely
    .selectFrom('connections')
    .selectAll()
    .where('status', '=', 'active')
    .where('provider_id', 'is not', null)
    .where('expires_at', '<=', now + deps.config.vault.refreshSkewMs)
    // Past half the token's lifetime, as refreshDue says.
    .where(sql`expires_at + updated_at`, '<=', 2 * now)
    .where((eb) => eb.or([eb('next_refresh_at', 'is', null), eb('next_refresh_at', '<=', now)]))
    .limit(100)
    .execute();
  let refreshed = 0;
  for (const row of rows) {
    try {
      await refreshConnection(deps, row);
      refreshed++;
    } catch {
      // Recorded on the row (and logged); the next sweep or read tries again after the backoff.
    }
  }
  return refreshed;
}
