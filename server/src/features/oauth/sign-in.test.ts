import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type FakeOidc, startFakeOidc } from '../../../test/fake-oidc.js';
import { createHarness, fieldsOf, type Harness, type TestTenant } from '../../../test/harness.js';
import { oauthTenant } from '../../../test/oauth-tenant.js';

// Social sign-in end to end against a real OpenID provider on loopback (oidc-provider).

let h: Harness;
let op: FakeOidc;
const CALLBACK = 'http://gatehouse.test/api/auth/oauth/callback';
const APP = 'https://app.example.com/signed-in';

before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  op = await startFakeOidc();
});
after(async () => {
  await h.close();
  await op.close();
});

const setup = () =>
  oauthTenant(h, op, {
    callback: CALLBACK,
    appUri: APP,
    clientSecret: 'sign-in-secret',
    scopes: ['openid', 'email', 'profile'],
  });

/** The browser's round trip; returns where Gatehouse finally sends it (the app's URI). */
async function signIn(t: TestTenant, query: Record<string, string> = {}): Promise<URL> {
  const params = new URLSearchParams({ tenant: t.publishableKey, redirect_uri: APP, ...query });
  const start = await h.request({ method: 'GET', url: `/api/auth/oauth/acme/start?${params}` });
  assert.equal(start.status, 302, start.text);
  const back = await op.authorize(String(start.headers.location));
  assert.equal(`${back.origin}${back.pathname}`, CALLBACK);
  const done = await h.request({ method: 'GET', url: `${back.pathname}${back.search}` });
  assert.equal(done.status, 302, done.text);
  return new URL(String(done.headers.location));
}

const exchange = (t: TestTenant, body: Record<string, unknown>) =>
  h.request({
    method: 'POST',
    url: '/api/auth/oauth/token',
    tenant: t.publishableKey,
    body: { redirect_uri: APP, ...body },
  });

describe('social sign-in', () => {
  it('signs up by the provider identity, back to the app with a one-time code (never a token in the URL) exchanged for tokens', async () => {
    const t = await setup();
    op.nextUser({
      sub: `sub-${randomBytes(3).toString('hex')}`,
      email: 'new.person@example.com',
      email_verified: true,
      name: 'New Person',
    });
    const back = await signIn(t, { state: 'app-state-1' });
    assert.equal(`${back.origin}${back.pathname}`, APP);
    assert.equal(back.searchParams.get('state'), 'app-state-1');
    const code = back.searchParams.get('code');
    assert.ok(code);
    assert.doesNotMatch(back.href, /access_token|refresh_token|eyJ/);
    const tokens = await exchange(t, { code });
    assert.equal(tokens.status, 200, tokens.text);
    assert.equal(tokens.body.user.email, 'new.person@example.com');
    assert.equal(tokens.body.user.email_verified, true);
    const me = await h.request({ method: 'GET', url: '/api/auth/me', token: tokens.body.access_token });
    assert.equal(me.body.id ?? me.body.user?.id, tokens.body.user.id);

    const replay = await exchange(t, { code });
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error.code, 'invalid_grant');

    const again = await exchange(t, { code: (await signIn(t)).searchParams.get('code') });
    assert.equal(again.body.user.id, tokens.body.user.id, 'the same subject is the same user');
  });

  it('never links an existing account by email, verified by the provider or not: the person signs in to it instead', async () => {
    const t = await setup();
    const existing = await t.user({ email: `linked-${randomBytes(3).toString('hex')}@example.com` });
    for (const email_verified of [false, true]) {
      op.nextUser({ sub: `sub-${randomBytes(3).toString('hex')}`, email: existing.email, email_verified });
      const refused = await signIn(t, { state: 's' });
      assert.equal(refused.searchParams.get('error'), 'access_denied');
      assert.match(refused.searchParams.get('error_description') ?? '', /already exists/);
      assert.equal(refused.searchParams.get('state'), 's');
      assert.equal(refused.searchParams.get('code'), null);
    }
  });

  it('PKCE from the app: the code needs the verifier; a redirect URI not on the list is refused before the provider', async () => {
    const t = await setup();
    op.nextUser({
      sub: `sub-${randomBytes(3).toString('hex')}`,
      email: `pkce-${randomBytes(3).toString('hex')}@example.com`,
      email_verified: true,
    });
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const first = await signIn(t, { code_challenge: challenge, code_challenge_method: 'S256' });
    const without = await exchange(t, { code: first.searchParams.get('code') });
    assert.deepEqual(fieldsOf(without), ['code_verifier']);
    const second = await signIn(t, { code_challenge: challenge, code_challenge_method: 'S256' });
    const wrong = await exchange(t, {
      code: second.searchParams.get('code'),
      code_verifier: randomBytes(32).toString('base64url'),
    });
    assert.equal(wrong.body.error.code, 'invalid_grant');
    const third = await signIn(t, { code_challenge: challenge, code_challenge_method: 'S256' });
    const right = await exchange(t, { code: third.searchParams.get('code'), code_verifier: verifier });
    assert.equal(right.status, 200, right.text);

    const elsewhere = await h.request({
      method: 'GET',
      url: `/api/auth/oauth/acme/start?tenant=${t.publishableKey}&redirect_uri=${encodeURIComponent('https://evil.example.com/')}`,
    });
    assert.equal(elsewhere.status, 400);
    assert.deepEqual(fieldsOf(elsewhere), ['redirect_uri']);
    const wrongUri = await exchange(t, {
      code: (await signIn(t)).searchParams.get('code'),
      redirect_uri: 'https://app.example.com/other',
    });
    assert.equal(wrongUri.body.error.code, 'invalid_grant');
  });
});
