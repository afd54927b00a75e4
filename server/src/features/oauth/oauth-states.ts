import { json } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import { sha256 } from '../../lib/tokens.js';
import { webUrlProblem } from '../../lib/web-urls.js';
import { effectiveSettings, requireTenant } from '../tenants/tenants.service.js';
import { authorizationUrl } from './oauth-client.js';
import { findOAuthProviderById, type OAuthProviderRow } from './oauth-providers.repo.js';

// The authorizations Gatehouse starts at a provider, for vault connections and for sign-in: one
// state row each (stored as the state's SHA-256, the PKCE verifier sealed), single use, 10 minutes.

const STATE_TTL_MS = 10 * 60_000;
const verifierAad = (stateHash: string) => `oauth_state:${stateHash}`;
const urlAad = (stateHash: string) => `oauth_state_url:${stateHash}`;

/**
 * A redirect target must be an http(s) URL fit for a redirect (lib/web-urls.ts: lists saved before
 * that check may still hold a `javascript:` URI) and on the tenant's exact list (no open
 * redirects; RFC 9700 §4.1).
 */
export async function checkRedirect(deps: Deps, tenantId: string, field: string, uri: string | undefined) {
  if (uri === undefined) return;
  // Sign-in's redirect_uri comes in the query string, the vault's redirect_after in a body.
  const where = { in: field === 'redirect_uri' ? 'querystring' : 'body' } as const;
  const problem = webUrlProblem(uri, 'redirect');
  if (problem) throw invalidField(field, problem, where);
  const allowed = effectiveSettings(deps.config, await requireTenant(deps, tenantId)).allowedRedirectUris;
  if (!allowed.includes(uri)) {
    throw invalidField(field, "is not one of the tenant's allowed_redirect_uris (exact match)", where);
  }
}

export interface Authorization {
  purpose: 'connect' | 'sign_in';
  /** Gatehouse's callback for this purpose (registered at the provider). */
  callbackUrl: string;
  scopes: string[];
  extra: Record<string, string>;
  /** Whose connection it makes (connect). */
  owner?: string;
  userId?: string | null;
  /** Where the browser goes afterwards (already checked against the tenant's list). */
  redirectAfter: string | null;
  /** The app's own state and PKCE challenge, carried through (sign-in). */
  appState?: string | null;
  appCodeChallenge?: string | null;
  /** Keep the authorization URL (sealed) for a link page to send the browser to later (connect). */
  keepUrl?: boolean;
}

/** The provider's authorization URL with a fresh state and PKCE, the state stored to be taken once. */
export async function beginAuthorization(deps: Deps, provider: OAuthProviderRow, a: Authorization) {
  const started = await authorizationUrl(deps, provider, {
    redirectUri: a.callbackUrl,
    scopes: a.scopes,
    extra: a.extra,
  });
  const now = deps.clock.now();
  const id = sha256(started.state);
  await deps.db.kysely
    .insertInto('oauth_states')
    .values({
      id,
      tenant_id: provider.tenant_id,
      provider_id: provider.id,
      purpose: a.purpose,
      owner: a.owner ?? null,
      user_id: a.userId ?? null,
      code_verifier_sealed: deps.masterKey.seal(started.codeVerifier, verifierAad(id)),
      redirect_after: a.redirectAfter,
      scopes: json.write(a.scopes),
      created_at: now,
      expires_at: now + STATE_TTL_MS,
      used_at: null,
      app_state: a.appState ?? null,
      app_code_challenge: a.appCodeChallenge ?? null,
      authorize_url_sealed: a.keepUrl ? deps.masterKey.seal(started.url, urlAad(id)) : null,
    })
    .execute();
  return { url: started.url, state: started.state, expiresAt: now + STATE_TTL_MS };
}

/**
 * Takes the state of a callback: known, of this purpose, not expired, and not used before (the
 * conditional update makes it single-use even when two callbacks race). Returns its row, the
 * provider and the PKCE verifier.
 */
export async function takeState(deps: Deps, state: string | undefined, purpose: 'connect' | 'sign_in') {
  if (!state) throw new AppError('invalid_request', 'The callback carries no state');
  const id = sha256(state);
  const now = deps.clock.now();
  const row = await deps.db.kysely
    .updateTable('oauth_states')
    .set({ used_at: now })
    .where('id', '=', id)
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returningAll()
    .executeTakeFirst();
  if (!row) {
    throw new AppError('invalid_request', 'This authorization is unknown, expired or already used; start again');
  }
  const provider = await findOAuthProviderById(deps.db.kysely, row.provider_id);
  if (!provider || provider.tenant_id !== row.tenant_id) {
    throw new AppError('invalid_request', 'The OAuth provider of this authorization is gone');
  }
  const codeVerifier = deps.masterKey.open(row.code_verifier_sealed, verifierAad(id)).toString('utf8');
  return { row, provider, codeVerifier };
}

/**
 * A live state of this purpose, without taking it (a link page shows it before the browser goes
 * on); its kept authorization URL, if any.
 */
export async function findLiveState(deps: Deps, state: string, purpose: 'connect' | 'sign_in') {
  const id = sha256(state);
  const row = await deps.db.kysely
    .selectFrom('oauth_states')
    .selectAll()
    .where('id', '=', id)
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('expires_at', '>', deps.clock.now())
    .executeTakeFirst();
  if (!row) return undefined;
  const url = row.authorize_url_sealed
    ? deps.masterKey.open(row.authorize_url_sealed, urlAad(id)).toString('utf8')
    : null;
  return { row, url };
}

/**
 * Binds a live state to one browser (the hash of its secret): the first browser to ask gets it,
 * and the same browser again; any other is refused (false).
 */
export async function bindStateToBrowser(deps: Deps, stateId: string, binding: string): Promise<boolean> {
  const bound = await deps.db.kysely
    .updateTable('oauth_states')
    .set({ browser_binding: binding })
    .where('id', '=', stateId)
    .where('used_at', 'is', null)
    .where('expires_at', '>', deps.clock.now())
    .where((eb) => eb.or([eb('browser_binding', 'is', null), eb('browser_binding', '=', binding)]))
    .executeTakeFirst();
  return Number(bound.numUpdatedRows) === 1;
}
