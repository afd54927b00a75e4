import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { injectBrowser } from '../../../test/browser.js';
import { type FakeOidc, startFakeOidc } from '../../../test/fake-oidc.js';
import { createHarness, fieldsOf, type Harness, type TestResponse, type TestTenant } from '../../../test/harness.js';
import { oauthTenant } from '../../../test/oauth-tenant.js';

// OAuth connections in the vault against a real OpenID provider on loopback (oidc-provider):
// auth link → provider login → callback → stored connection → getAuth → expiry and refresh → revoke.

let h: Harness;
let op: FakeOidc;
const CALLBACK = 'http://gatehouse.test/api/vault/callback';
const APP_RETURN = 'https://app.example.com/connected';

before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8', VAULT_REFRESH_SKEW: '60s' });
  op = await startFakeOidc();
});
after(async () => {
  await h.close();
  await op.close();
});

interface Setup {
  t: TestTenant;
  service: string;
  serviceKey: string;
}

/** A tenant with an OAuth provider `acme` discovered from the fake issuer, and the app's return URL allowed. */
async function setup(): Promise<Setup> {
  const t = await oauthTenant(h, op, {
    callback: CALLBACK,
    appUri: APP_RETURN,
    clientSecret: 'client-secret-never-shown',
    scopes: ['openid', 'email', 'offline_access'],
  });
  return { t, service: 'acme', serviceKey: await t.serviceKey() };
}

/** A link (sendAuthLink) for `user_id`. */
async function authLink(s: Setup, userId: string, body: Record<string, unknown> = {}): Promise<string> {
  const link = await h.request({
    method: 'POST',
    url: '/api/vault/auth-url',
    token: s.serviceKey,
    body: { service: s.service, user_id: userId, redirect_after: APP_RETURN, ...body },
  });
  assert.equal(link.status, 200, link.text);
  return link.body.url;
}

/** A browser (cookie jar) opens the link page and continues: returns the provider URL it is sent to. */
async function continueLink(browser: ReturnType<typeof injectBrowser>, link: string): Promise<URL> {
  const url = new URL(link);
  assert.equal(`${url.origin}${url.pathname}`, 'http://gatehouse.test/vault/connect');
  const page = await browser.get(`${url.pathname}${url.search}`);
  assert.equal(page.status, 200, page.text);
  const next = await browser.post('/vault/connect', { state: url.searchParams.get('state') ?? '' });
  assert.equal(next.status, 303, next.text);
  return new URL(String(next.headers.location));
}

/** The whole browser round trip for `user_id` in one browser; returns the callback's answer. */
async function connect(s: Setup, userId: string, body: Record<string, unknown> = {}): Promise<TestResponse> {
  const browser = injectBrowser(h);
  const back = await op.authorize((await continueLink(browser, await authLink(s, userId, body))).href);
  assert.equal(`${back.origin}${back.pathname}`, CALLBACK);
  return browser.get(`${back.pathname}${back.search}`);
}

const getAuth = (s: Setup, userId: string, instance = h) =>
  instance.request({
    method: 'GET',
    url: `/api/vault/connections/${s.service}?user_id=${userId}`,
    token: s.serviceKey,
  });

describe('OAuth providers (admin)', () => {
  it('discovered from an issuer; the client secret stored encrypted and never returned; presets listed', async () => {
    const s = await setup();
    const listed = await h.request({
      method: 'GET',
      url: '/api/admin/oauth/providers',
      token: h.operator.token,
      tenant: s.t.id,
    });
    const provider = listed.body.data[0];
    assert.equal(provider.token_endpoint, `${op.issuer}/token`);
    assert.equal(provider.has_client_secret, true);
    assert.equal(provider.pkce, true);
    assert.doesNotMatch(listed.text, /client-secret-never-shown/);
    const row = await h.deps.db.kysely
      .selectFrom('oauth_providers')
      .selectAll()
      .where('id', '=', provider.id)
      .executeTakeFirstOrThrow();
    assert.doesNotMatch(JSON.stringify(row), /client-secret-never-shown/);
    const presets = await h.request({ method: 'GET', url: '/api/admin/oauth/presets', token: h.operator.token });
    assert.deepEqual(
      presets.body.data.map((p: { preset: string }) => p.preset),
      ['google', 'github', 'microsoft', 'slack', 'notion'],
    );
    const insecure = await h.request({
      method: 'POST',
      url: '/api/admin/oauth/providers',
      token: h.operator.token,
      tenant: s.t.id,
      body: {
        name: 'plain',
        client_id: 'x',
        authorization_endpoint: 'http://auth.example.com/a',
        token_endpoint: 'https://auth.example.com/t',
      },
    });
    assert.deepEqual(fieldsOf(insecure), ['authorization_endpoint'], 'plain http only to an allowed network');
  });
});

describe('vault OAuth connections', () => {
  it('auth link → provider → callback (state, PKCE) → stored tokens → getAuth; back to the app', async () => {
    const s = await setup();
    const done = await connect(s, 'user123');
    assert.equal(done.status, 302, done.text);
    assert.equal(done.headers.location, `${APP_RETURN}?service=acme&status=connected`);
    const got = await getAuth(s, 'user123');
    assert.equal(got.status, 200, got.text);
    assert.equal(got.body.oauth, true);
    assert.equal(got.body.status, 'active');
    assert.equal(typeof got.body.auth_data.access_token, 'string');
    assert.equal(typeof got.body.auth_data.refresh_token, 'string');
    assert.ok(Date.parse(got.body.expires_at) > Date.now());
    // No token, secret or PKCE verifier in plaintext anywhere the flow wrote.
    const dump: unknown[] = [];
    for (const table of [
      'connections',
      'oauth_states',
      'oauth_providers',
      'vault_keys',
      'audit_events',
      'events',
    ] as const) {
      dump.push(await h.deps.db.kysely.selectFrom(table).selectAll().execute());
    }
    const text = JSON.stringify(dump);
    for (const secret of [
      got.body.auth_data.access_token,
      got.body.auth_data.refresh_token,
      'client-secret-never-shown',
    ]) {
      assert.ok(!text.includes(secret), 'a secret in the database dump');
    }
    assert.ok(!h.logs.join('').includes(got.body.auth_data.refresh_token), 'a refresh token in the logs');
    const sent = await continueLink(injectBrowser(h), await authLink(s, 'x'));
    assert.equal(sent.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(sent.searchParams.get('redirect_uri'), CALLBACK);
  });

  it('a state works once: a replayed callback, an unknown state and a redirect not on the list are refused', async () => {
    const s = await setup();
    const browser = injectBrowser(h);
    const back = await op.authorize((await continueLink(browser, await authLink(s, 'user123'))).href);
    const first = await browser.get(`${back.pathname}${back.search}`);
    assert.equal(first.status, 302, first.text);
    const replay = await browser.get(`${back.pathname}${back.search}`);
    assert.equal(replay.status, 400);
    assert.match(replay.body.error.message, /unknown, expired or already used/);
    const foreign = await h.request({
      method: 'GET',
      url: `/api/vault/callback?code=abc&state=${randomBytes(16).toString('base64url')}`,
    });
    assert.equal(foreign.status, 400);
    const elsewhere = await h.request({
      method: 'POST',
      url: '/api/vault/auth-url',
      token: s.serviceKey,
      body: { service: 'acme', user_id: 'user123', redirect_after: 'https://evil.example.com/' },
    });
    assert.deepEqual(fieldsOf(elsewhere), ['redirect_after']);
    const unknown = await h.request({
      method: 'POST',
      url: '/api/vault/auth-url',
      token: s.serviceKey,
      body: { service: 'nope', user_id: 'u' },
    });
    assert.deepEqual(fieldsOf(unknown), ['service']);
  });

  it('an expired token is refreshed on read; 20 concurrent reads cause exactly one refresh at the provider', async (ctx) => {
    const s = await setup();
    await connect(s, 'user123');
    const before = (await getAuth(s, 'user123')).body.auth_data.access_token;
    const advance = h.clockFor(ctx);
    advance(3_600_000);
    op.tokenDelayMs = 150;
    const refreshes = op.counts.refresh_token;
    try {
      const reads = await Promise.all(Array.from({ length: 20 }, () => getAuth(s, 'user123')));
      assert.deepEqual(
        new Set(reads.map((r) => r.status)),
        new Set([200]),
        reads
          .map((r) => r.text)
          .join('\n')
          .slice(0, 500),
      );
      assert.equal(op.counts.refresh_token - refreshes, 1, 'one refresh for twenty reads');
      const tokens = new Set(reads.map((r) => r.body.auth_data.access_token));
      assert.equal(tokens.size, 1, 'every reader got the refreshed token');
      assert.notEqual([...tokens][0], before);
    } finally {
      op.tokenDelayMs = 0;
    }
  });

  it('short-lived tokens (60 s, under the 5-minute skew) are refreshed once half their life is gone, not at every read', async (ctx) => {
    const s = await setup();
    await connect(s, 'user123');
    const refreshes = op.counts.refresh_token;
    for (let i = 0; i < 3; i++) assert.equal((await getAuth(s, 'user123')).status, 200);
    assert.equal(op.counts.refresh_token - refreshes, 0, 'a fresh 60 s token is not due');
    const advance = h.clockFor(ctx);
    advance(31_000);
    const first = await getAuth(s, 'user123');
    assert.equal(op.counts.refresh_token - refreshes, 1, 'due past half its life');
    for (let i = 0; i < 3; i++) {
      const again = await getAuth(s, 'user123');
      assert.equal(again.body.auth_data.access_token, first.body.auth_data.access_token);
    }
    assert.equal(op.counts.refresh_token - refreshes, 1, 'the refreshed token is fresh again');
  });

  it('the same across two instances sharing PostgreSQL', async (ctx) => {
    if (!process.env.TEST_DATABASE_URL) return ctx.skip('needs TEST_DATABASE_URL (SQLite mode is one instance)');
    const s = await setup();
    await connect(s, 'user123');
    const second = await h.secondInstance();
    const advance = h.clockFor(ctx);
    advance(3_600_000);
    op.tokenDelayMs = 150;
    const refreshes = op.counts.refresh_token;
    try {
      const reads = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 === 0 ? h : second).request({
            method: 'GET',
            url: `/api/vault/connections/acme?user_id=user123`,
            token: s.serviceKey,
          }),
        ),
      );
      assert.deepEqual(new Set(reads.map((r) => r.status)), new Set([200]));
      assert.equal(op.counts.refresh_token - refreshes, 1);
      assert.equal(new Set(reads.map((r) => r.body.auth_data.access_token)).size, 1);
    } finally {
      op.tokenDelayMs = 0;
    }
  });

  it('a rejected refresh token: 409 needs_reauth, connection.refresh_failed emitted; a provider error backs off', async (ctx) => {
    const s = await setup();
    await connect(s, 'alice');
    await connect(s, 'bob');
    const advance = h.clockFor(ctx);
    advance(3_600_000);

    op.failRefresh('server_error');
    const down = await getAuth(s, 'bob');
    assert.equal(down.status, 502, down.text);
    assert.ok(down.body.error.details.retry_at);
    const calls = op.counts.refresh_token;
    const waiting = await getAuth(s, 'bob');
    assert.equal(waiting.status, 502, 'still backing off');
    assert.equal(op.counts.refresh_token, calls, 'the provider is not asked again during the backoff');

    op.failRefresh('invalid_grant');
    const rejected = await getAuth(s, 'alice');
    assert.equal(rejected.status, 409, rejected.text);
    assert.equal(rejected.body.error.details.status, 'needs_reauth');
    const list = await h.request({ method: 'GET', url: '/api/vault/connections?user_id=alice', token: s.serviceKey });
    assert.equal(list.body.data[0].status, 'needs_reauth');
    const events = await h.request({
      method: 'GET',
      url: '/api/admin/events?type=connection.refresh_failed',
      token: s.serviceKey,
    });
    assert.equal(events.body.data.length, 1, events.text);
    assert.equal(events.body.data[0].data.user_id, 'alice');

    // Connecting again makes it whole.
    await connect(s, 'alice');
    assert.equal((await getAuth(s, 'alice')).status, 200);
  });

  it('revokeAuth revokes the refresh token at the provider, then forgets the connection', async () => {
    const s = await setup();
    await connect(s, 'user123');
    const token = (await getAuth(s, 'user123')).body.auth_data.refresh_token;
    const res = await h.request({
      method: 'DELETE',
      url: '/api/vault/connections/acme?user_id=user123',
      token: s.serviceKey,
    });
    assert.equal(res.status, 204);
    assert.equal(op.revoked.at(-1), token);
    assert.equal((await getAuth(s, 'user123')).status, 404);
  });

  it('refreshAuth refreshes now; a connection saved as is has nothing to refresh it', async () => {
    const s = await setup();
    await connect(s, 'user123');
    const refreshes = op.counts.refresh_token;
    const res = await h.request({
      method: 'POST',
      url: '/api/vault/connections/acme/refresh?user_id=user123',
      token: s.serviceKey,
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(op.counts.refresh_token, refreshes + 1);
    await h.request({
      method: 'PUT',
      url: '/api/vault/connections/plain?user_id=user123',
      token: s.serviceKey,
      body: { auth_data: { key: 'k' } },
    });
    const plain = await h.request({
      method: 'POST',
      url: '/api/vault/connections/plain/refresh?user_id=user123',
      token: s.serviceKey,
    });
    assert.equal(plain.status, 409);
  });
});
