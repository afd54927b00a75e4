import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type FakeOidc, startFakeOidc } from '../../../test/fake-oidc.js';
import { createHarness, type Harness, STRONG_PASSWORD, type TestUser } from '../../../test/harness.js';
import { oauthTenant } from '../../../test/oauth-tenant.js';

// Account takeover through social sign-in (ADR 0013): a provider's word about an email never
// links an existing account, and a tenant admin's provider never reaches an account above them.

let h: Harness;
let op: FakeOidc;
/** A provider a hostile tenant admin runs: it "verifies" whatever it is told to. */
let evil: FakeOidc;
const CALLBACK = 'http://gatehouse.test/api/auth/oauth/callback';
const APP = 'https://app.example.com/signed-in';
const hex = () => randomBytes(4).toString('hex');

before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  op = await startFakeOidc();
  evil = await startFakeOidc();
});
after(async () => {
  await h.close();
  await op.close();
  await evil.close();
});

/** The browser's round trip through `provider`; returns where Gatehouse finally sends it. */
async function signIn(provider: string, through: FakeOidc, publishableKey?: string): Promise<URL> {
  const params = new URLSearchParams({
    redirect_uri: APP,
    state: 'app-state',
    ...(publishableKey && { tenant: publishableKey }),
  });
  const start = await h.request({ method: 'GET', url: `/api/auth/oauth/${provider}/start?${params}` });
  assert.equal(start.status, 302, start.text);
  const back = await through.authorize(String(start.headers.location));
  const done = await h.request({ method: 'GET', url: `${back.pathname}${back.search}` });
  assert.equal(done.status, 302, done.text);
  return new URL(String(done.headers.location));
}

async function exchange(publishableKey: string | undefined, back: URL) {
  const code = back.searchParams.get('code');
  assert.ok(code, `no code: ${back.href}`);
  const res = await h.request({
    method: 'POST',
    url: '/api/auth/oauth/token',
    ...(publishableKey && { tenant: publishableKey }),
    body: { code, redirect_uri: APP },
  });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

function assertRefused(back: URL, description: RegExp) {
  assert.equal(`${back.origin}${back.pathname}`, APP);
  assert.equal(back.searchParams.get('error'), 'access_denied', back.href);
  assert.match(back.searchParams.get('error_description') ?? '', description);
  assert.equal(back.searchParams.get('state'), 'app-state');
  assert.equal(back.searchParams.get('code'), null);
}

/** The endpoints of a fake provider, as an admin would paste them. */
async function endpointsOf(provider: FakeOidc) {
  const res = await fetch(`${provider.issuer}/.well-known/openid-configuration`);
  const d = (await res.json()) as Record<string, string>;
  return {
    issuer: d.issuer,
    authorization_endpoint: d.authorization_endpoint,
    token_endpoint: d.token_endpoint,
    userinfo_endpoint: d.userinfo_endpoint,
  };
}

async function defaultTenant(): Promise<{ id: string; publishable_key: string }> {
  const list = await h.request({ method: 'GET', url: '/api/admin/tenants?limit=100', token: h.operator.token });
  const found = list.body.data.find((t: { slug: string }) => t.slug === 'default');
  assert.ok(found, list.text);
  return found;
}

/** A user of the default tenant (no tenant header), made an admin there by the operator. */
async function defaultTenantAdmin(): Promise<TestUser & { token: string }> {
  const email = `admin-${hex()}@example.com`;
  const reg = await h.request({
    method: 'POST',
    url: '/api/auth/register',
    body: { email, password: STRONG_PASSWORD },
  });
  assert.equal(reg.status, 201, reg.text);
  const promote = await h.request({
    method: 'PATCH',
    url: `/api/admin/users/${reg.body.user.id}`,
    token: h.operator.token,
    body: { role: 'admin' },
  });
  assert.equal(promote.status, 200, promote.text);
  const login = await h.request({ method: 'POST', url: '/api/auth/login', body: { email, password: STRONG_PASSWORD } });
  return {
    id: reg.body.user.id,
    email,
    password: STRONG_PASSWORD,
    accessToken: login.body.access_token,
    refreshToken: login.body.refresh_token,
    apiKey: reg.body.api_key.key,
    apiKeyId: reg.body.api_key.id,
    token: login.body.access_token,
  };
}

describe('social sign-in never takes over an account', () => {
  it('refuses, and links nothing, when an account with the email exists: the one who registered it first with a password gets nothing of the provider identity', async () => {
    const t = await oauthTenant(h, op, {
      callback: CALLBACK,
      appUri: APP,
      clientSecret: 'takeover-secret',
      scopes: ['openid', 'email', 'profile'],
    });
    const victimEmail = `victim-${hex()}@example.com`;
    const squatter = await t.user({ email: victimEmail });
    op.nextUser({ sub: `victim-${hex()}`, email: victimEmail, email_verified: true });

    assertRefused(
      await signIn('acme', op, t.publishableKey),
      /account with this email already exists.*linked to it only from the account itself/,
    );
    // Still refused: the first attempt linked nothing to the squatter's account.
    assertRefused(await signIn('acme', op, t.publishableKey), /already exists/);
    const squatterLogin = await t.login({ email: victimEmail, password: squatter.password });
    assert.equal(squatterLogin.status, 200);
    assert.equal(squatterLogin.body.user.id, squatter.id);
    const audit = await h.request({
      method: 'GET',
      url: '/api/admin/audit?action=login.failed',
      token: h.operator.token,
      tenant: t.id,
    });
    const refusals = audit.body.data.filter(
      (e: { data: { reason?: string } }) => e.data.reason === 'email_has_account',
    );
    assert.equal(refusals.length, 2);
    assert.equal(refusals[0].target.id, squatter.id);
  });

  it("refuses a tenant admin's own provider that 'verifies' the operator's, another admin's or a user's email", async () => {
    const tenant = await defaultTenant();
    const attacker = await defaultTenantAdmin();
    const peer = await defaultTenantAdmin();
    const user = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      body: { email: `plain-${hex()}@example.com`, password: STRONG_PASSWORD },
    });
    const operatorMe = await h.request({ method: 'GET', url: '/api/auth/me', token: h.operator.token });

    // The admin sets up a provider of their own in the default tenant.
    const name = `evil-${hex()}`;
    const clientId = `evil-client-${hex()}`;
    evil.client({ clientId, clientSecret: 'evil-secret', redirectUris: [CALLBACK] });
    const added = await h.request({
      method: 'POST',
      url: '/api/admin/oauth/providers',
      token: attacker.token,
      body: {
        name,
        issuer: evil.issuer,
        client_id: clientId,
        client_secret: 'evil-secret',
        scopes: ['openid', 'email'],
      },
    });
    assert.equal(added.status, 201, added.text);
    const allowed = await h.request({
      method: 'PATCH',
      url: `/api/admin/tenants/${tenant.id}`,
      token: attacker.token,
      body: { settings: { allowed_redirect_uris: [APP] } },
    });
    assert.equal(allowed.status, 200, allowed.text);

    for (const email of [operatorMe.body.email, peer.email, user.body.user.email]) {
      evil.nextUser({ sub: `forged-${hex()}`, email, email_verified: true });
      assertRefused(await signIn(name, evil), /already exists/);
    }
  });

  it("an admin's link does not follow a provider repointed at another server (a user's does); pointed back, it works again", async () => {
    const t = await oauthTenant(h, op, {
      callback: CALLBACK,
      appUri: APP,
      clientSecret: 'repoint-secret',
      scopes: ['openid', 'email', 'profile'],
    });
    // Two people sign up with the provider; one is then made an admin of the tenant.
    const adminSub = `admin-${hex()}`;
    op.nextUser({ sub: adminSub, email: `social-admin-${hex()}@example.com`, email_verified: true });
    const socialAdmin = await exchange(t.publishableKey, await signIn('acme', op, t.publishableKey));
    const promote = await h.request({
      method: 'PATCH',
      url: `/api/admin/users/${socialAdmin.user.id}`,
      token: h.operator.token,
      tenant: t.id,
      body: { role: 'admin' },
    });
    assert.equal(promote.status, 200, promote.text);
    const userSub = `user-${hex()}`;
    op.nextUser({ sub: userSub, email: `social-user-${hex()}@example.com`, email_verified: true });
    const socialUser = await exchange(t.publishableKey, await signIn('acme', op, t.publishableKey));

    // Another admin of the tenant repoints the provider at a server they control.
    const attacker = await t.admin();
    const providers = await h.request({
      method: 'GET',
      url: '/api/admin/oauth/providers',
      token: attacker.accessToken,
    });
    const acme = providers.body.data.find((p: { name: string }) => p.name === 'acme');
    const clientId = `evil-client-${hex()}`;
    evil.client({ clientId, clientSecret: 'evil-secret', redirectUris: [CALLBACK] });
    const repoint = (to: FakeOidc, client: { client_id: string; client_secret: string }) =>
      endpointsOf(to).then((endpoints) =>
        h.request({
          method: 'PATCH',
          url: `/api/admin/oauth/providers/${acme.id}`,
          token: attacker.accessToken,
          body: { ...endpoints, ...client },
        }),
      );
    assert.equal((await repoint(evil, { client_id: clientId, client_secret: 'evil-secret' })).status, 200);

    evil.nextUser({ sub: adminSub, email: `anything-${hex()}@example.com`, email_verified: true });
    assertRefused(await signIn('acme', evil, t.publishableKey), /reconfigured since this account was linked/);
    // The tenant's own users follow the tenant's provider: the admin may repoint it for them.
    evil.nextUser({ sub: userSub, email: `anything-${hex()}@example.com`, email_verified: true });
    const user = await exchange(t.publishableKey, await signIn('acme', evil, t.publishableKey));
    assert.equal(user.user.id, socialUser.user.id);

    assert.equal((await repoint(op, { client_id: acme.client_id, client_secret: 'repoint-secret' })).status, 200);
    op.nextUser({ sub: adminSub, email: `social-admin@example.com`, email_verified: true });
    const back = await exchange(t.publishableKey, await signIn('acme', op, t.publishableKey));
    assert.equal(back.user.id, socialAdmin.user.id);
    assert.equal(back.user.role, 'admin');
  });
});

describe('a tenant admin and accounts above their role', () => {
  it('403 for renaming, disabling, re-roling, deleting or re-planning the operator; 200 for a peer admin and a user', async () => {
    const attacker = await defaultTenantAdmin();
    const peer = await defaultTenantAdmin();
    const user = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      body: { email: `plain-${hex()}@example.com`, password: STRONG_PASSWORD },
    });
    const operator = (await h.request({ method: 'GET', url: '/api/auth/me', token: h.operator.token })).body;
    const as = (token: string) => ({ token });

    const attempts = [
      { method: 'PATCH', url: `/api/admin/users/${operator.id}`, body: { name: 'Owned' } },
      { method: 'PATCH', url: `/api/admin/users/${operator.id}`, body: { disabled: true } },
      { method: 'PATCH', url: `/api/admin/users/${operator.id}`, body: { role: 'user' } },
      { method: 'DELETE', url: `/api/admin/users/${operator.id}` },
      { method: 'PUT', url: `/api/admin/users/${operator.id}/plan`, body: { plan: 'free' } },
    ] as const;
    for (const attempt of attempts) {
      const res = await h.request({ ...attempt, ...as(attacker.token) });
      assert.equal(res.status, 403, `${attempt.method} ${attempt.url}: ${res.text}`);
      assert.equal(res.body.error.code, 'forbidden');
    }
    const still = await h.request({ method: 'GET', url: '/api/auth/me', token: h.operator.token });
    assert.equal(still.status, 200, 'the operator is still signed in');
    assert.equal(still.body.name, operator.name);
    assert.equal(still.body.role, 'operator');

    for (const target of [peer.id, user.body.user.id]) {
      const rename = await h.request({
        method: 'PATCH',
        url: `/api/admin/users/${target}`,
        ...as(attacker.token),
        body: { name: 'Renamed' },
      });
      assert.equal(rename.status, 200, rename.text);
      const plan = await h.request({
        method: 'PUT',
        url: `/api/admin/users/${target}/plan`,
        ...as(attacker.token),
        body: { plan: 'pro' },
      });
      assert.equal(plan.status, 200, plan.text);
    }
    const demote = await h.request({
      method: 'PATCH',
      url: `/api/admin/users/${peer.id}`,
      ...as(attacker.token),
      body: { role: 'user' },
    });
    assert.equal(demote.status, 200, 'admins manage their peers (ADR 0003, ADR 0013)');

    const byOperator = await h.request({
      method: 'PATCH',
      url: `/api/admin/users/${operator.id}`,
      token: h.operator.token,
      body: { name: operator.name ?? 'Operator' },
    });
    assert.equal(byOperator.status, 200, byOperator.text);
  });
});
