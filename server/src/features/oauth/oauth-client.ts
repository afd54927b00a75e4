import type * as Oidc from 'openid-client';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import { OutboundRefused, plainHttpAllowed } from '../../lib/outbound.js';
import type { OAuthProviderRow } from './oauth-providers.repo.js';

// The OAuth 2.0 / OpenID Connect client side, on openid-client (panva): discovery, authorization
// URLs with state and PKCE (S256), the code exchange, refresh and revocation. Every request goes
// through the outbound agent (address policy, no redirects); plain http only to networks the
// operator allowed (RFC 9700 §2.6: TLS everywhere else).

export const secretAad = (id: string) => `oauth_provider:${id}`;

/** openid-client (and its oauth4webapi) load on the first OAuth call, not at start. */
let loaded: typeof Oidc | undefined;
async function lib(): Promise<typeof Oidc> {
  loaded ??= await import('openid-client');
  return loaded;
}

function fetchFor(deps: Deps): Oidc.CustomFetch {
  return (url, options) => deps.outbound.fetch(url, options as RequestInit);
}

function insecureAllowed(deps: Deps, urls: (string | null)[]): boolean {
  return urls.some((url) => url?.startsWith('http:') && plainHttpAllowed(new URL(url), deps.outbound.allowed));
}

/** An endpoint URL: https, or http to an allowed network; names the field when not. */
export function checkEndpoint(deps: Deps, field: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalidField(field, 'must be a URL');
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && plainHttpAllowed(url, deps.outbound.allowed))) {
    return url.toString();
  }
  throw invalidField(field, 'must be https (plain http only to a network in OUTBOUND_ALLOWED_NETWORKS)');
}

/** The provider's endpoints from its OpenID Connect discovery document. */
export async function discover(deps: Deps, issuer: string) {
  const oidc = await lib();
  try {
    const config = await oidc.discovery(new URL(issuer), 'gatehouse-discovery', undefined, oidc.None(), {
      [oidc.customFetch]: fetchFor(deps),
      execute: insecureAllowed(deps, [issuer]) ? [oidc.allowInsecureRequests] : [],
      timeout: 10,
    });
    const m = config.serverMetadata();
    if (!m.authorization_endpoint || !m.token_endpoint) throw new Error('no authorization or token endpoint');
    return {
      issuer: m.issuer,
      authorization_endpoint: m.authorization_endpoint,
      token_endpoint: m.token_endpoint,
      revocation_endpoint: m.revocation_endpoint ?? null,
      userinfo_endpoint: m.userinfo_endpoint ?? null,
    };
  } catch (error) {
    throw invalidField('issuer', `discovery failed: ${reason(error)}`);
  }
}

/** What went wrong in a call to a provider, in a sentence (never a token). */
export function reason(error: unknown): string {
  if (loaded && error instanceof loaded.ResponseBodyError)
    return `${error.error}${error.error_description ? `: ${error.error_description}` : ''}`;
  const refused = [error, (error as { cause?: unknown })?.cause].find((e) => e instanceof OutboundRefused);
  if (refused) return (refused as Error).message;
  return error instanceof Error ? error.message : String(error);
}

/** The provider said the grant is no good (a revoked or expired refresh token): only a new authorization helps. */
export const grantRejected = (error: unknown) =>
  loaded !== undefined &&
  error instanceof loaded.ResponseBodyError &&
  (error.error === 'invalid_grant' || error.error === 'unauthorized_client');

/** openid-client's configuration for a stored provider (its secret opened for the call only). */
export async function clientConfig(deps: Deps, row: OAuthProviderRow): Promise<Oidc.Configuration> {
  const oidc = await lib();
  const secret = row.client_secret_sealed
    ? deps.masterKey.open(row.client_secret_sealed, secretAad(row.id)).toString('utf8')
    : undefined;
  const config = new oidc.Configuration(
    {
      issuer: row.issuer ?? new URL(row.authorization_endpoint).origin,
      authorization_endpoint: row.authorization_endpoint,
      token_endpoint: row.token_endpoint,
      ...(row.revocation_endpoint && { revocation_endpoint: row.revocation_endpoint }),
      ...(row.userinfo_endpoint && { userinfo_endpoint: row.userinfo_endpoint }),
    },
    row.client_id,
    secret,
    secret ? oidc.ClientSecretPost(secret) : oidc.None(),
  );
  config[oidc.customFetch] = fetchFor(deps);
  config.timeout = 15;
  if (insecureAllowed(deps, [row.authorization_endpoint, row.token_endpoint])) oidc.allowInsecureRequests(config);
  return config;
}

export interface Started {
  url: string;
  state: string;
  codeVerifier: string;
}

/** An authorization URL with a fresh state and PKCE (S256). */
export async function authorizationUrl(
  deps: Deps,
  row: OAuthProviderRow,
  params: { redirectUri: string; scopes: string[]; extra: Record<string, string> },
): Promise<Started> {
  const oidc = await lib();
  const state = oidc.randomState();
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const url = oidc.buildAuthorizationUrl(await clientConfig(deps, row), {
    ...params.extra,
    redirect_uri: params.redirectUri,
    ...(params.scopes.length > 0 && { scope: params.scopes.join(' ') }),
    state,
    ...(row.pkce === 1 && {
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    }),
  });
  return { url: url.href, state, codeVerifier };
}

export type Tokens = Oidc.TokenEndpointResponse;

/** The code exchange at the token endpoint, checking state (and PKCE when used). */
export async function exchangeCode(
  deps: Deps,
  row: OAuthProviderRow,
  callbackUrl: URL,
  checks: { state: string; codeVerifier: string },
): Promise<{ tokens: Tokens; claims: Oidc.IDToken | undefined }> {
  const oidc = await lib();
  try {
    const response = await oidc.authorizationCodeGrant(await clientConfig(deps, row), callbackUrl, {
      expectedState: checks.state,
      ...(row.pkce === 1 && { pkceCodeVerifier: checks.codeVerifier }),
      idTokenExpected: false,
    });
    return { tokens: { ...response }, claims: response.claims() };
  } catch (error) {
    throw new AppError('upstream_unavailable', `${row.name} did not complete the sign-in: ${reason(error)}`, {
      cause: error,
    });
  }
}

export async function refreshTokens(deps: Deps, row: OAuthProviderRow, refreshToken: string): Promise<Tokens> {
  const oidc = await lib();
  return { ...(await oidc.refreshTokenGrant(await clientConfig(deps, row), refreshToken)) };
}

export async function revokeToken(deps: Deps, row: OAuthProviderRow, token: string): Promise<void> {
  const oidc = await lib();
  await oidc.tokenRevocation(await clientConfig(deps, row), token);
}

/** The provider's userinfo; `subject` (from an ID token) must match when given. */
export async function userInfo(deps: Deps, row: OAuthProviderRow, accessToken: string, subject: string | undefined) {
  const oidc = await lib();
  return oidc.fetchUserInfo(await clientConfig(deps, row), accessToken, subject ?? oidc.skipSubjectCheck);
}
