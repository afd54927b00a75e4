import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { type FakeOidc, startFakeOidc } from './fake-oidc.js';

const REDIRECT_URI = 'http://gatehouse.test/api/vault/callback';
const CLIENT = { clientId: 'gatehouse', clientSecret: 'gatehouse-secret', redirectUris: [REDIRECT_URI] };

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint: string;
  userinfo_endpoint: string;
  jwks_uri: string;
  code_challenge_methods_supported: string[];
  scopes_supported: string[];
}

interface TokenResponse {
  access_token?: string;
  refresh_token?: string;
  id_token?: string;
  expires_in?: number;
  token_type?: string;
  scope?: string;
  error?: string;
  error_description?: string;
}

let op: FakeOidc;
let discovery: Discovery;

before(async () => {
  op = await startFakeOidc();
  op.client(CLIENT);
  const response = await fetch(`${op.issuer}/.well-known/openid-configuration`);
  discovery = (await response.json()) as Discovery;
});
after(() => op.close());

function basic(clientId = CLIENT.clientId, secret = CLIENT.clientSecret): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

async function tokenRequest(
  params: Record<string, string>,
  auth: 'basic' | 'post' = 'basic',
): Promise<{ status: number; body: TokenResponse; ms: number }> {
  const started = Date.now();
  const body = new URLSearchParams(params);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth === 'basic') headers.authorization = basic();
  else {
    body.set('client_id', CLIENT.clientId);
    body.set('client_secret', CLIENT.clientSecret);
  }
  const response = await fetch(discovery.token_endpoint, { method: 'POST', headers, body });
  return { status: response.status, body: (await response.json()) as TokenResponse, ms: Date.now() - started };
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizationUrl(params: Record<string, string>): string {
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: CLIENT.clientId,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile offline_access',
    ...params,
  }).toString();
  return url.href;
}

/** Authorization code flow by hand (PKCE S256, state); returns the token response. */
async function login(): Promise<TokenResponse> {
  const { verifier, challenge } = pkce();
  const state = randomBytes(8).toString('hex');
  const callback = await op.authorize(
    authorizationUrl({ state, code_challenge: challenge, code_challenge_method: 'S256' }),
  );
  const code = callback.searchParams.get('code');
  assert.ok(code, callback.href);
  const { status, body } = await tokenRequest({
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT_URI,
    code_verifier: verifier,
  });
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

describe('fake OIDC provider', () => {
  it('publishes discovery with the endpoints Gatehouse needs', () => {
    assert.equal(discovery.issuer, op.issuer);
    assert.match(op.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    for (const endpoint of [
      discovery.authorization_endpoint,
      discovery.token_endpoint,
      discovery.revocation_endpoint,
      discovery.userinfo_endpoint,
      discovery.jwks_uri,
    ]) {
      assert.ok(endpoint?.startsWith(`${op.issuer}/`), endpoint);
    }
    assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
    for (const scope of ['openid', 'email', 'profile', 'offline_access']) {
      assert.ok(discovery.scopes_supported.includes(scope), scope);
    }
  });

  it('authorize() logs in and consents, returning the redirect with code and state; the code exchanges for tokens', async () => {
    const { verifier, challenge } = pkce();
    const callback = await op.authorize(
      authorizationUrl({ state: 'state-123', code_challenge: challenge, code_challenge_method: 'S256' }),
    );
    assert.equal(`${callback.origin}${callback.pathname}`, REDIRECT_URI);
    assert.equal(callback.searchParams.get('state'), 'state-123');
    assert.equal(callback.searchParams.get('iss'), op.issuer);
    const code = callback.searchParams.get('code');
    assert.ok(code);

    const before = op.counts.authorization_code;
    const { status, body } = await tokenRequest({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(op.counts.authorization_code, before + 1);
    assert.ok(body.access_token);
    assert.ok(body.refresh_token);
    assert.ok(body.id_token);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, 60);

    const { payload } = await jwtVerify(body.id_token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
      issuer: op.issuer,
      audience: CLIENT.clientId,
    });
    assert.equal(payload.sub, 'user-1');
    assert.equal(payload.email, 'user1@example.com');
    assert.equal(payload.email_verified, true);
    assert.equal(payload.name, 'User One');

    const userinfo = await fetch(discovery.userinfo_endpoint, {
      headers: { authorization: `Bearer ${body.access_token}` },
    });
    assert.equal(userinfo.status, 200);
    assert.deepEqual(await userinfo.json(), {
      sub: 'user-1',
      email: 'user1@example.com',
      email_verified: true,
      name: 'User One',
    });

    // A code is single-use.
    const again = await tokenRequest({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
    });
    assert.equal(again.status, 400);
    assert.equal(again.body.error, 'invalid_grant');
  });

  it('enforces PKCE when the authorization request carried a challenge; works without PKCE otherwise', async () => {
    const { challenge } = pkce();
    const withChallenge = await op.authorize(
      authorizationUrl({ state: 's', code_challenge: challenge, code_challenge_method: 'S256' }),
    );
    const missing = await tokenRequest({
      grant_type: 'authorization_code',
      code: withChallenge.searchParams.get('code') ?? '',
      redirect_uri: REDIRECT_URI,
    });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error, 'invalid_grant');

    const withoutChallenge = await op.authorize(authorizationUrl({ state: 's' }));
    const ok = await tokenRequest(
      {
        grant_type: 'authorization_code',
        code: withoutChallenge.searchParams.get('code') ?? '',
        redirect_uri: REDIRECT_URI,
      },
      'post', // client_secret_post is accepted too
    );
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.ok(ok.body.refresh_token);
  });

  it('nextUser() decides who the next login is; claims follow', async () => {
    op.nextUser({ sub: 'user-2', email: 'two@example.com', email_verified: false, name: 'Two' });
    try {
      const tokens = await login();
      const [, payload = ''] = (tokens.id_token ?? '').split('.');
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
      assert.equal(claims.sub, 'user-2');
      assert.equal(claims.email, 'two@example.com');
      assert.equal(claims.email_verified, false);
      assert.equal(claims.name, 'Two');
    } finally {
      op.nextUser({ sub: 'user-1', email: 'user1@example.com', email_verified: true, name: 'User One' });
    }
  });

  it('refresh works and is counted; refresh tokens rotate and a reused one is rejected', async () => {
    const tokens = await login();
    const before = op.counts.refresh_token;
    const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.equal(op.counts.refresh_token, before + 1);
    assert.ok(refreshed.body.access_token);
    assert.notEqual(refreshed.body.access_token, tokens.access_token);
    assert.ok(refreshed.body.refresh_token);
    assert.notEqual(refreshed.body.refresh_token, tokens.refresh_token, 'rotated');

    const reused = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' });
    assert.equal(reused.status, 400);
    assert.equal(reused.body.error, 'invalid_grant');
    assert.equal(op.counts.refresh_token, before + 2);
  });

  it('without rotation the same refresh token is returned and stays usable', async () => {
    op.rotateRefreshTokens = false;
    try {
      const tokens = await login();
      for (let i = 0; i < 2; i++) {
        const refreshed = await tokenRequest({
          grant_type: 'refresh_token',
          refresh_token: tokens.refresh_token ?? '',
        });
        assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
        assert.equal(refreshed.body.refresh_token, tokens.refresh_token);
      }
    } finally {
      op.rotateRefreshTokens = true;
    }
  });

  it('failRefresh() makes the next refreshes fail (invalid_grant, server_error); the refresh token stays valid', async () => {
    const tokens = await login();
    const refresh = () => tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' });

    op.failRefresh('invalid_grant');
    const rejected = await refresh();
    assert.equal(rejected.status, 400);
    assert.equal(rejected.body.error, 'invalid_grant');

    op.failRefresh('server_error', 2);
    for (let i = 0; i < 2; i++) {
      const failed = await refresh();
      assert.equal(failed.status, 500);
      assert.equal(failed.body.error, 'server_error');
    }

    const ok = await refresh();
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  it('failRefresh() leaves code exchanges alone and waits for the next refresh', async () => {
    op.failRefresh('invalid_grant');
    const tokens = await login();
    const failed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' });
    assert.equal(failed.body.error, 'invalid_grant');
  });

  it('revocation is counted and a revoked refresh token no longer works', async () => {
    const tokens = await login();
    const before = op.counts.revocation;
    const response = await fetch(discovery.revocation_endpoint, {
      method: 'POST',
      headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tokens.refresh_token ?? '', token_type_hint: 'refresh_token' }),
    });
    assert.equal(response.status, 200);
    assert.equal(op.counts.revocation, before + 1);
    assert.equal(op.revoked.at(-1), tokens.refresh_token);

    const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' });
    assert.equal(refreshed.status, 400);
    assert.equal(refreshed.body.error, 'invalid_grant');
    // Revoking the refresh token revokes the grant: its access token is gone too.
    const userinfo = await fetch(discovery.userinfo_endpoint, {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    assert.equal(userinfo.status, 401);
  });

  it('tokenDelayMs delays token responses; accessTokenTtl sets expires_in', async () => {
    const tokens = await login();
    op.tokenDelayMs = 300;
    op.accessTokenTtl = 5;
    try {
      const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' });
      assert.equal(refreshed.status, 200);
      assert.ok(refreshed.ms >= 280, `took ${refreshed.ms} ms`);
      assert.equal(refreshed.body.expires_in, 5);
    } finally {
      op.tokenDelayMs = 0;
      op.accessTokenTtl = 60;
    }
  });

  it('authorize() throws when the provider shows an error page (unregistered redirect_uri)', async () => {
    await assert.rejects(
      op.authorize(authorizationUrl({ state: 's', redirect_uri: 'http://evil.test/cb' })),
      /redirect_uri/,
    );
  });

  it('client() replaces a registration (new secret, new redirect URIs)', async () => {
    op.client({ clientId: 'other', clientSecret: 'one', redirectUris: ['http://127.0.0.1:9/a'] });
    op.client({ clientId: 'other', clientSecret: 'two', redirectUris: ['http://127.0.0.1:9/b'] });
    const url = new URL(discovery.authorization_endpoint);
    url.search = new URLSearchParams({
      client_id: 'other',
      response_type: 'code',
      redirect_uri: 'http://127.0.0.1:9/b',
      scope: 'openid',
      state: 'x',
    }).toString();
    const callback = await op.authorize(url.href);
    const response = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { authorization: basic('other', 'two'), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: callback.searchParams.get('code') ?? '',
        redirect_uri: 'http://127.0.0.1:9/b',
      }),
    });
    assert.equal(response.status, 200);

    const oldSecret = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { authorization: basic('other', 'one'), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'whatever' }),
    });
    assert.equal(oldSecret.status, 401);
  });

  it('openid-client v6 runs the flow: discovery, code grant with PKCE, userinfo, refresh, revocation', async () => {
    const config = await oidc.discovery(
      new URL(op.issuer),
      CLIENT.clientId,
      { redirect_uris: [REDIRECT_URI] },
      oidc.ClientSecretBasic(CLIENT.clientSecret),
      { execute: [oidc.allowInsecureRequests] },
    );
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid email profile offline_access',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const callback = await op.authorize(url.href);

    const codeGrants = op.counts.authorization_code;
    const tokens = await oidc.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    assert.equal(op.counts.authorization_code, codeGrants + 1);
    const claims = tokens.claims();
    assert.equal(claims?.sub, 'user-1');
    assert.equal(claims?.email, 'user1@example.com');
    const left = tokens.expiresIn() ?? 0; // counted down from the answer's arrival: 60, or 59 across a second
    assert.ok(left === 60 || left === 59, `expiresIn() = ${left}`);
    assert.ok(tokens.refresh_token);

    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims?.sub ?? '');
    assert.equal(userinfo.email_verified, true);

    const refreshes = op.counts.refresh_token;
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
    assert.equal(op.counts.refresh_token, refreshes + 1);
    assert.ok(refreshed.access_token);
    assert.ok(refreshed.refresh_token);

    op.failRefresh('invalid_grant');
    await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token), (error: unknown) => {
      assert.ok(error instanceof oidc.ResponseBodyError);
      assert.equal(error.error, 'invalid_grant');
      assert.equal(error.status, 400);
      return true;
    });

    const revocations = op.counts.revocation;
    await oidc.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
    assert.equal(op.counts.revocation, revocations + 1);
    await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token), { error: 'invalid_grant' });
  });
});
