import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IDToken } from 'openid-client';
import { isUniqueViolation, json, transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import type { ClientInfo } from '../../http/principal.js';
import { sha256 } from '../../lib/tokens.js';
import { findUser, findUserByEmail, insertUser, type UserRow, updateUser } from '../accounts/accounts.repo.js';
import { normalizeEmail, presentUser } from '../accounts/accounts.service.js';
import { beginSignUp } from '../accounts/signup-guard.js';
import { recordAudit } from '../audit/audit.service.js';
import { emitEvent } from '../events/events.service.js';
import { startSession } from '../sessions/sessions.service.js';
import type { Tenant } from '../tenants/tenants.types.js';
import { exchangeCode, reason, userInfo } from './oauth-client.js';
import type { OAuthProviderRow } from './oauth-providers.repo.js';
import { requireOAuthProvider } from './oauth-providers.service.js';
import { beginAuthorization, checkRedirect, takeState } from './oauth-states.js';

// Social sign-in to Gatehouse itself, on the tenant's OAuth providers (the vault's client code).
// The app sends the browser to /start with its exact redirect URI; after the provider, Gatehouse
// signs the user in (or up) by the provider's subject and sends the browser back with a one-time
// code, which the app exchanges for tokens: tokens never travel in a URL (RFC 9700 §2.1.2).

const CODE_TTL_MS = 60_000;
const s256 = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');

export const signInCallbackUrl = (deps: Deps) => `${deps.config.publicUrl}/api/auth/oauth/callback`;

export interface StartInput {
  redirect_uri: string;
  state?: string;
  code_challenge?: string;
  code_challenge_method?: string;
}

/** GET /api/auth/oauth/{provider}/start: the provider's authorization URL for this sign-in. */
export async function startSignIn(deps: Deps, tenant: Tenant, providerName: string, input: StartInput) {
  const provider = await requireOAuthProvider(deps, tenant.id, providerName);
  await checkRedirect(deps, tenant.id, 'redirect_uri', input.redirect_uri);
  if (input.code_challenge !== undefined && input.code_challenge_method !== 'S256') {
    throw invalidField('code_challenge_method', 'must be S256 when a code_challenge is sent');
  }
  const started = await beginAuthorization(deps, provider, {
    purpose: 'sign_in',
    callbackUrl: signInCallbackUrl(deps),
    scopes: json.read<string[]>(provider.scopes, []),
    extra: json.read<Record<string, string>>(provider.extra_params, {}),
    redirectAfter: input.redirect_uri,
    appState: input.state ?? null,
    appCodeChallenge: input.code_challenge ?? null,
  });
  return started.url;
}

interface Identity {
  subject: string;
  email: string | null;
  emailVerified: boolean;
  name: string | null;
}

/** Who the provider says signed in: the ID token's claims, else its userinfo (GitHub's /user has `id`). */
async function identityOf(
  deps: Deps,
  provider: OAuthProviderRow,
  tokens: { access_token: string },
  claims: IDToken | undefined,
): Promise<Identity> {
  let info: Record<string, unknown> | undefined = claims;
  if (!info?.email && provider.userinfo_endpoint) {
    const fetched = await userInfo(deps, provider, tokens.access_token, claims?.sub);
    info = { ...fetched, ...claims };
  }
  const subject = info?.sub ?? info?.id;
  if (subject === undefined || subject === null || subject === '') {
    throw new AppError('upstream_unavailable', `${provider.name} did not say who signed in`);
  }
  return {
    subject: String(subject),
    email: typeof info?.email === 'string' ? normalizeEmail(info.email) : null,
    emailVerified: info?.email_verified === true,
    name: typeof info?.name === 'string' ? info.name : null,
  };
}

/** Where the browser goes back to, with these parameters (the app's own state included). */
function backTo(redirectUri: string, params: Record<string, string | null>) {
  const url = new URL(redirectUri);
  for (const [key, value] of Object.entries(params)) if (value !== null) url.searchParams.set(key, value);
  return url.href;
}

/**
 * Who vouches for a provider's subjects: its issuer and the endpoints its claims come from (the
 * ID token's, and userinfo's). OpenID Connect Core §5.7: only iss and sub together identify a
 * user; a provider repointed at another server is another authority (ADR 0013).
 */
export const identityAuthority = (provider: OAuthProviderRow) =>
  `${provider.issuer ?? ''} ${provider.token_endpoint} ${provider.userinfo_endpoint ?? ''}`;

/**
 * GET /api/auth/oauth/callback: the provider's redirect. Answers where to send the browser: the
 * app's redirect URI with a one-time code, or with `error` (RFC 6749 §4.1.2.1 names). Who signed
 * in (ADR 0013, DESIGN: accounts are linked to an external identity only through an email
 * Gatehouse verified, or by the person signing in to the account to link it):
 * - a known (provider, subject) is its user; but an admin's or operator's link holds only while
 *   the provider points where it did when the link was made;
 * - else, when an account has that email, nothing is linked: the person must sign in to that
 *   account to link the provider (Gatehouse does not verify emails itself yet, and a provider's
 *   "verified" is only that provider's word; a tenant admin can add one that says anything);
 * - else a new user is signed up.
 */
export async function finishSignIn(
  deps: Deps,
  query: { code?: string; state?: string; error?: string },
  url: URL,
  client: ClientInfo,
): Promise<string> {
  const { row, provider, codeVerifier } = await takeState(deps, query.state, 'sign_in');
  const redirectUri = row.redirect_after ?? '';
  const fail = (error: string, description: string) =>
    backTo(redirectUri, { error, error_description: description, state: row.app_state });
  if (query.error) return fail('access_denied', `${provider.name} answered ${query.error}`);

  let identity: Identity;
  try {
    const { tokens, claims } = await exchangeCode(deps, provider, url, { state: query.state ?? '', codeVerifier });
    identity = await identityOf(deps, provider, tokens, claims);
  } catch (error) {
    deps.log.warn({ provider: provider.name, reason: reason(error) }, 'sign-in: the provider did not complete');
    return fail('server_error', `${provider.name} did not complete the sign-in`);
  }

  const tenantId = row.tenant_id;
  const db = deps.db.kysely;
  const authority = identityAuthority(provider);
  const refuse = async (userId: string, why: string, description: string) => {
    await recordAudit(db, deps, {
      tenantId,
      action: 'login.failed',
      actor: { type: 'anonymous', id: null },
      target: { type: 'user', id: userId },
      client,
      data: { method: 'oauth', provider: provider.name, reason: why },
    });
    return fail('access_denied', description);
  };
  const known = await db
    .selectFrom('user_identities')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('provider_id', '=', provider.id)
    .where('subject', '=', identity.subject)
    .executeTakeFirst();
  let userId = known?.user_id;
  if (known && known.authority !== authority) {
    // The provider now points elsewhere: a tenant admin may do that for the tenant's users, not
    // to reach an account above them.
    const linked = await findUser(db, tenantId, known.user_id);
    if (linked && linked.role !== 'user') {
      return refuse(
        linked.id,
        'provider_changed_since_linked',
        `${provider.name} has been reconfigured since this account was linked to it; sign in another way and link it again`,
      );
    }
  }
  const created = !userId;
  if (!userId) {
    const sameEmail = identity.email ? await findUserByEmail(db, tenantId, identity.email) : undefined;
    if (sameEmail) {
      return refuse(
        sameEmail.id,
        'email_has_account',
        `An account with this email already exists. Sign in to it another way; ${provider.name} can be linked to it only from the account itself`,
      );
    }
    if (!identity.email) return fail('access_denied', `${provider.name} shared no email address`);
    // A social sign-up counts against its address as a password one does (signup-guard.ts).
    try {
      await beginSignUp(deps, client.ip);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      return fail('temporarily_unavailable', error.message);
    }
    userId = deps.ids.next('usr');
  }
  const code = randomBytes(32).toString('base64url');
  const finalUserId = userId;
  const now = deps.clock.now();
  let user: UserRow | undefined;
  try {
    user = await transaction(db, async (trx) => {
      if (created) {
        await insertUser(trx, {
          id: finalUserId,
          tenant_id: tenantId,
          email: identity.email ?? '',
          name: identity.name,
          password_hash: null,
          role: 'user',
          disabled_at: null,
          email_verified_at: identity.emailVerified ? now : null,
          plan_id: null,
          last_login_at: now,
          created_at: now,
          updated_at: now,
        });
        await emitEvent(trx, deps, {
          tenantId,
          type: 'user.created',
          data: { user_id: finalUserId, email: identity.email, method: 'oauth', provider: provider.name },
        });
      }
      if (!known) {
        await trx
          .insertInto('user_identities')
          .values({
            id: deps.ids.next('idn'),
            tenant_id: tenantId,
            user_id: finalUserId,
            provider_id: provider.id,
            subject: identity.subject,
            email: identity.email,
            authority,
            created_at: now,
            last_login_at: now,
          })
          .execute();
      } else {
        await trx
          .updateTable('user_identities')
          .set({ last_login_at: now, authority })
          .where('id', '=', known.id)
          .execute();
      }
      const found = await findUser(trx, tenantId, finalUserId);
      if (!found || found.disabled_at !== null) return found;
      await updateUser(trx, tenantId, finalUserId, { last_login_at: now });
      await trx
        .insertInto('oauth_codes')
        .values({
          id: sha256(code),
          tenant_id: tenantId,
          user_id: finalUserId,
          redirect_uri: redirectUri,
          code_challenge: row.app_code_challenge,
          created_at: now,
          expires_at: now + CODE_TTL_MS,
          used_at: null,
        })
        .execute();
      await recordAudit(trx, deps, {
        tenantId,
        action: created ? 'user.registered' : 'login.succeeded',
        actor: { type: 'user', id: finalUserId },
        target: { type: 'user', id: finalUserId },
        client,
        data: { method: 'oauth', provider: provider.name },
      });
      return found;
    });
  } catch (error) {
    // Two callbacks for one new identity or email at once: the other one made it.
    if ((error instanceof AppError && error.code === 'email_taken') || isUniqueViolation(error)) {
      return fail('temporarily_unavailable', 'Another sign-in for this account was in progress; try again');
    }
    throw error;
  }
  if (!user || user.disabled_at !== null) return fail('access_denied', 'This account is disabled');
  return backTo(redirectUri, { code, state: row.app_state });
}

/**
 * POST /api/auth/oauth/token: the one-time code for a session, once, within a minute, with the
 * redirect URI it was issued for and the app's PKCE verifier when it sent a challenge.
 */
export async function exchangeSignInCode(
  deps: Deps,
  tenant: Tenant,
  input: { code: string; redirect_uri: string; code_verifier?: string },
  client: ClientInfo,
) {
  const now = deps.clock.now();
  const invalid = () =>
    new AppError('invalid_grant', 'This code is unknown, expired, already used, or not for this redirect_uri');
  const row = await deps.db.kysely
    .updateTable('oauth_codes')
    .set({ used_at: now })
    .where('id', '=', sha256(input.code))
    .where('tenant_id', '=', tenant.id)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returningAll()
    .executeTakeFirst();
  if (!row || row.redirect_uri !== input.redirect_uri) throw invalid();
  if (row.code_challenge !== null) {
    if (!input.code_verifier)
      throw invalidField('code_verifier', 'is required: the sign-in started with a code_challenge');
    const expected = Buffer.from(row.code_challenge);
    const actual = Buffer.from(s256(input.code_verifier));
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) throw invalid();
  }
  const user = await findUser(deps.db.kysely, tenant.id, row.user_id);
  if (!user || user.disabled_at !== null) throw new AppError('account_disabled', 'This account is disabled');
  const { tokens } = await transaction(deps.db.kysely, (trx) =>
    startSession(trx, deps, { tenant, userId: user.id, client }),
  );
  return { ...tokens, user: presentUser(user) };
}
