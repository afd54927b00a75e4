import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const refresh = (refreshToken: string) =>
  h.request({ method: 'POST', url: '/api/auth/refresh', body: { refresh_token: refreshToken } });
const me = (token: string) => h.request({ method: 'GET', url: '/api/auth/me', token });

async function liveTokensOf(sessionOf: string) {
  const row = await h.deps.db.kysely
    .selectFrom('refresh_tokens')
    .select('session_id')
    .where('token_hash', '=', (await import('../../lib/tokens.js')).sha256(sessionOf))
    .executeTakeFirstOrThrow();
  return h.deps.db.kysely
    .selectFrom('refresh_tokens')
    .select('id')
    .where('session_id', '=', row.session_id)
    .where('used_at', 'is', null)
    .execute();
}

describe('POST /api/auth/refresh', () => {
  it('200 rotates: a new pair, and the new refresh token works while the access token names the same session', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const first = await refresh(user.refreshToken);
    assert.equal(first.status, 200, first.text);
    assert.notEqual(first.body.refresh_token, user.refreshToken);
    assert.equal(first.body.token_type, 'bearer');
    assert.equal((await me(first.body.access_token)).status, 200);
    const second = await refresh(first.body.refresh_token);
    assert.equal(second.status, 200);
    const sid = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).sid;
    assert.equal(sid(second.body.access_token), sid(user.accessToken));
  });

  it('200 gives a duplicate within the grace window the very same pair', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const a = await refresh(user.refreshToken);
    advance(5_000);
    const b = await refresh(user.refreshToken);
    assert.equal(b.status, 200);
    assert.deepEqual(b.body, a.body);
    assert.equal((await refresh(a.body.refresh_token)).status, 200, 'the shared successor still rotates normally');
  });

  it('401 for a replay after the grace window, which revokes the whole family and is audited', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const rotated = await refresh(user.refreshToken);
    advance(11_000);
    const replay = await refresh(user.refreshToken);
    assert.equal(replay.status, 401);
    assert.equal(replay.body.error.code, 'invalid_refresh_token');
    assert.equal((await refresh(rotated.body.refresh_token)).status, 401, 'the legitimate successor is revoked too');
    assert.equal((await me(rotated.body.access_token)).status, 401, 'and so are its access tokens');
    const audit = await h.request({
      method: 'GET',
      url: '/api/admin/audit?action=refresh_token.reuse_detected',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(audit.body.data.length, 1);
    assert.equal(audit.body.data[0].actor.id, user.id);
  });

  it('50 concurrent refreshes of one token end with one live family member; every answer is that pair or a 401', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const results = await Promise.all(Array.from({ length: 50 }, () => refresh(user.refreshToken)));
    const ok = results.filter((r) => r.status === 200);
    assert.ok(ok.length >= 1, 'at least one exchange succeeds');
    for (const r of results) assert.ok(r.status === 200 || r.status === 401, `unexpected ${r.status} ${r.text}`);
    const pairs = new Set(ok.map((r) => `${r.body.access_token}|${r.body.refresh_token}`));
    assert.equal(pairs.size, 1, 'every successful answer is the same pair');
    const live = await liveTokensOf(user.refreshToken);
    assert.equal(live.length, 1);
    assert.equal((await refresh(ok[0].body.refresh_token)).status, 200);
  });

  it('401 for an unknown token and for one past its idle lifetime', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    assert.equal((await refresh('grt_nothing')).status, 401);
    advance(7 * 86_400_000 + 1_000);
    const idle = await refresh(user.refreshToken);
    assert.equal(idle.status, 401);
  });

  it('400 naming refresh_token when it is missing', async () => {
    const res = await h.request({ method: 'POST', url: '/api/auth/refresh', body: {} });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.details.fields[0].field, 'refresh_token');
  });
});

describe('logout and sessions', () => {
  it('204 logout ends this session: its access and refresh tokens stop working, others keep going', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const other = await t.login({ email: user.email, password: user.password });
    const res = await h.request({ method: 'POST', url: '/api/auth/logout', token: user.accessToken });
    assert.equal(res.status, 204);
    assert.equal((await me(user.accessToken)).status, 401);
    assert.equal((await refresh(user.refreshToken)).status, 401);
    assert.equal((await me(other.body.access_token)).status, 200);
  });

  it('204 logout with an API key names the session by refresh_token; 400 without one', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const none = await h.request({ method: 'POST', url: '/api/auth/logout', token: user.apiKey, body: {} });
    assert.equal(none.status, 400);
    const res = await h.request({
      method: 'POST',
      url: '/api/auth/logout',
      token: user.apiKey,
      body: { refresh_token: user.refreshToken },
    });
    assert.equal(res.status, 204);
    assert.equal((await refresh(user.refreshToken)).status, 401);
  });

  it('200 logout-all ends every session but API keys keep working', async () => {
    const t = await h.tenant();
    const user = await t.user();
    await t.login({ email: user.email, password: user.password });
    const res = await h.request({ method: 'POST', url: '/api/auth/logout-all', token: user.apiKey });
    assert.equal(res.status, 200);
    assert.equal(res.body.sessions_revoked, 2);
    assert.equal((await me(user.accessToken)).status, 401);
    assert.equal((await me(user.apiKey)).status, 200);
  });

  it('200 lists live sessions with ip, user agent and the current one marked; DELETE revokes one', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const other = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      ip: '198.51.100.20',
      headers: { 'user-agent': 'TestAgent/1.0' },
      body: { email: user.email, password: user.password },
    });
    const list = await h.request({ method: 'GET', url: '/api/auth/sessions', token: user.accessToken });
    assert.equal(list.status, 200);
    assert.equal(list.body.data.length, 2);
    const current = list.body.data.filter((s: { current: boolean }) => s.current);
    assert.equal(current.length, 1);
    const second = list.body.data.find((s: { current: boolean }) => !s.current);
    assert.equal(second.ip, '198.51.100.20');
    assert.equal(second.user_agent, 'TestAgent/1.0');
    const del = await h.request({ method: 'DELETE', url: `/api/auth/sessions/${second.id}`, token: user.accessToken });
    assert.equal(del.status, 204);
    assert.equal((await me(other.body.access_token)).status, 401);
    const after = await h.request({ method: 'GET', url: '/api/auth/sessions', token: user.accessToken });
    assert.equal(after.body.data.length, 1);
  });

  it("404 for another user's session and for another tenant's session", async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const a = await t1.user();
    const b = await t1.user();
    const c = await t2.user();
    const sessionOf = async (token: string) =>
      (await h.request({ method: 'GET', url: '/api/auth/sessions', token })).body.data[0].id;
    for (const victim of [b, c]) {
      const id = await sessionOf(victim.accessToken);
      const res = await h.request({ method: 'DELETE', url: `/api/auth/sessions/${id}`, token: a.accessToken });
      assert.equal(res.status, 404);
      assert.equal((await me(victim.accessToken)).status, 200);
    }
  });
});
