import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, STRONG_PASSWORD } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

describe('POST /api/auth/register', () => {
  it('201 returns user, token pair and the primary API key, shown once and stored only as a hash', async () => {
    const t = await h.tenant();
    const res = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t.publishableKey,
      body: { email: 'Ada@Example.com', password: STRONG_PASSWORD, name: 'Ada' },
    });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.user.email, 'ada@example.com');
    assert.equal(res.body.user.name, 'Ada');
    assert.match(res.body.user.id, /^usr_/);
    assert.equal(res.body.token_type, 'bearer');
    assert.equal(res.body.expires_in, 900);
    assert.match(res.body.api_key.key, /^gk_[0-9A-Za-z]{38}$/);
    assert.equal(res.body.api_key.name, 'Primary API Key');
    assert.ok(res.body.api_key.key.startsWith(res.body.api_key.start));

    const keys = await h.request({ method: 'GET', url: '/api/keys', token: res.body.access_token });
    assert.equal(keys.status, 200);
    assert.equal(keys.body.data.length, 1);
    assert.equal(keys.body.data[0].key, undefined, 'the list never returns the secret');
    const stored = await h.deps.db.kysely
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', res.body.api_key.id)
      .executeTakeFirstOrThrow();
    assert.notEqual(stored.key_hash, res.body.api_key.key);
    assert.equal(stored.key_hash.length, 64);
  });

  it('201 puts the user in the tenant named by the publishable key, not the default tenant', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const me = await h.request({ method: 'GET', url: '/api/auth/me', token: user.accessToken });
    assert.equal(me.status, 200);
    const row = await h.deps.db.kysely
      .selectFrom('users')
      .select('tenant_id')
      .where('id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.tenant_id, t.id);
  });

  it('400 validation_failed names the missing and the unknown fields', async () => {
    const t = await h.tenant();
    const missing = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t.publishableKey,
      body: { email: 'a@example.com' },
    });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, 'validation_failed');
    assert.ok(
      missing.body.error.details.fields.some((f: { field: string }) => f.field === 'password'),
      missing.text,
    );
    assert.match(missing.body.error.requestId, /^req_/);

    const extra = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t.publishableKey,
      body: { email: 'a@example.com', password: STRONG_PASSWORD, role: 'admin' },
    });
    assert.equal(extra.status, 400);
    assert.ok(
      extra.body.error.details.fields.some((f: { field: string }) => f.field === 'role'),
      extra.text,
    );

    const badEmail = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t.publishableKey,
      body: { email: 'nope', password: STRONG_PASSWORD },
    });
    assert.equal(badEmail.status, 400);
    assert.ok(
      badEmail.body.error.details.fields.some((f: { field: string }) => f.field === 'email'),
      badEmail.text,
    );
  });

  it('400 weak_password for short and common passwords, and nothing is written', async () => {
    const t = await h.tenant();
    for (const password of ['short', 'password123', 'iloveyou']) {
      const res = await h.request({
        method: 'POST',
        url: '/api/auth/register',
        tenant: t.publishableKey,
        body: { email: 'weak@example.com', password },
      });
      assert.equal(res.status, 400, password);
      assert.equal(res.body.error.code, 'weak_password');
      assert.equal(res.body.error.details.fields[0].field, 'password');
    }
    const users = await h.deps.db.kysely.selectFrom('users').select('id').where('tenant_id', '=', t.id).execute();
    assert.equal(users.length, 0);
  });

  it('400 invalid_tenant for an unknown publishable key', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: 'pk_unknown',
      body: { email: 'x@example.com', password: STRONG_PASSWORD },
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'invalid_tenant');
  });

  it('409 email_taken in the same tenant; the same email is free in another tenant', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    await t1.user({ email: 'same@example.com' });
    const again = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t1.publishableKey,
      body: { email: 'SAME@example.com', password: STRONG_PASSWORD },
    });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'email_taken');
    await t2.user({ email: 'same@example.com' });
  });
});

describe('/api/auth/me', () => {
  it('200 with an access token and with an API key; PATCH changes the name', async () => {
    const t = await h.tenant();
    const user = await t.user({ name: 'First' });
    const viaJwt = await h.request({ method: 'GET', url: '/api/auth/me', token: user.accessToken });
    const viaKey = await h.request({ method: 'GET', url: '/api/auth/me', token: user.apiKey });
    assert.equal(viaJwt.status, 200);
    assert.deepEqual(viaJwt.body, viaKey.body);
    assert.equal(viaJwt.body.password_hash, undefined);
    const patched = await h.request({
      method: 'PATCH',
      url: '/api/auth/me',
      token: user.apiKey,
      body: { name: 'Second' },
    });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.name, 'Second');
    const bad = await h.request({
      method: 'PATCH',
      url: '/api/auth/me',
      token: user.apiKey,
      body: { email: 'x@example.com' },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.details.fields[0].field, 'email');
  });

  it('401 with a malformed header, a garbage token and a tampered JWT', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const cases = [
      { authorization: 'Basic abc' },
      { authorization: 'Bearer not-a-token' },
      { authorization: `Bearer ${user.accessToken.slice(0, -3)}abc` },
      { authorization: `Bearer ${user.apiKey.slice(0, -1)}${user.apiKey.endsWith('A') ? 'B' : 'A'}` },
    ];
    for (const headers of cases) {
      const res = await h.request({ method: 'GET', url: '/api/auth/me', headers });
      assert.equal(res.status, 401, headers.authorization);
      assert.equal(res.body.error.code, 'invalid_token');
    }
  });
});

describe('POST /api/auth/password', () => {
  it('200 changes the password and revokes every other session, keeping this one', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const other = await t.login({ email: user.email, password: user.password });
    const res = await h.request({
      method: 'POST',
      url: '/api/auth/password',
      token: user.accessToken,
      body: { current_password: user.password, new_password: 'a different long passphrase' },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.other_sessions_revoked, 1);
    assert.equal((await h.request({ method: 'GET', url: '/api/auth/me', token: user.accessToken })).status, 200);
    assert.equal((await h.request({ method: 'GET', url: '/api/auth/me', token: other.body.access_token })).status, 401);
    const refresh = await h.request({
      method: 'POST',
      url: '/api/auth/refresh',
      body: { refresh_token: other.body.refresh_token },
    });
    assert.equal(refresh.status, 401);
    const oldLogin = await t.login({ email: user.email, password: user.password });
    assert.equal(oldLogin.status, 401);
    const newLogin = await t.login({ email: user.email, password: 'a different long passphrase' });
    assert.equal(newLogin.status, 200);
  });

  it('401 for a wrong current password and 400 for a weak new one, changing nothing', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const wrong = await h.request({
      method: 'POST',
      url: '/api/auth/password',
      token: user.accessToken,
      body: { current_password: 'wrong wrong wrong', new_password: 'a different long passphrase' },
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.details.fields[0].field, 'current_password');
    const weak = await h.request({
      method: 'POST',
      url: '/api/auth/password',
      token: user.accessToken,
      body: { current_password: user.password, new_password: 'short' },
    });
    assert.equal(weak.status, 400);
    assert.equal(weak.body.error.details.fields[0].field, 'new_password');
    const login = await t.login({ email: user.email, password: user.password });
    assert.equal(login.status, 200);
  });
});

describe('DELETE /api/admin/users/:id', () => {
  it('deletes the user with their sessions, keys and vault data, emits user.deleted, and keeps the rules', async () => {
    const t = await h.tenant();
    const [admin, user] = [await t.admin(), await t.user()];
    const saved = await h.request({
      method: 'PUT',
      url: '/api/vault/connections/github',
      token: user.apiKey,
      body: { auth_data: { access_token: 'gho_secret' } },
    });
    assert.equal(saved.status, 201, saved.text);

    const deleted = await h.request({ method: 'DELETE', url: `/api/admin/users/${user.id}`, token: admin.accessToken });
    assert.equal(deleted.status, 204, deleted.text);
    for (const token of [user.apiKey, user.accessToken]) {
      const me = await h.request({ method: 'GET', url: '/api/auth/me', token });
      assert.equal(me.status, 401, 'every credential of the deleted user stops working');
    }
    const refresh = await h.request({
      method: 'POST',
      url: '/api/auth/refresh',
      tenant: t.publishableKey,
      body: { refresh_token: user.refreshToken },
    });
    assert.equal(refresh.status, 401);
    const connections = await h.deps.db.kysely
      .selectFrom('connections')
      .select('id')
      .where('user_id', '=', user.id)
      .execute();
    assert.equal(connections.length, 0, 'the vault data is gone');
    const events = await h.request({
      method: 'GET',
      url: '/api/admin/events?type=user.deleted',
      token: admin.accessToken,
    });
    assert.deepEqual(events.body.data[0].data, { user_id: user.id });
    const again = await h.request({ method: 'DELETE', url: `/api/admin/users/${user.id}`, token: admin.accessToken });
    assert.equal(again.status, 404);
    // The email can sign up again, as a new user.
    const back = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t.publishableKey,
      body: { email: user.email, password: STRONG_PASSWORD },
    });
    assert.equal(back.status, 201);
    assert.notEqual(back.body.user.id, user.id);

    const self = await h.request({ method: 'DELETE', url: `/api/admin/users/${admin.id}`, token: admin.accessToken });
    assert.equal(self.status, 403, 'an admin cannot delete their own account');
    const other = await (await h.tenant()).user();
    const foreign = await h.request({
      method: 'DELETE',
      url: `/api/admin/users/${other.id}`,
      token: admin.accessToken,
    });
    assert.equal(foreign.status, 404, "another tenant's user is not found");
    const plain = await h.request({ method: 'DELETE', url: `/api/admin/users/${admin.id}`, token: user.apiKey });
    assert.equal(plain.status, 401);
  });
});
