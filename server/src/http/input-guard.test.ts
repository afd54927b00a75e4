import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, fieldsOf, type Harness, type TestResponse } from '../../test/harness.js';

// Hostile input is refused once for every route (ADR 0015). Each case runs on SQLite and, with
// TEST_DATABASE_URL, on PostgreSQL, where a NUL reaching the database was a 500.

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

function assertRefused(res: TestResponse, field: string, where: string) {
  assert.equal(res.status, 400, res.text);
  assert.equal(res.body.error.code, 'validation_failed', res.text);
  assert.deepEqual(fieldsOf(res), [field], res.text);
  assert.equal(res.body.error.details.fields[0].in, where, res.text);
}

const json = { 'content-type': 'application/json' };

describe('NUL and control characters', () => {
  it('400 names the body field holding NUL, on an unauthenticated route, and creates no account', async () => {
    const t = await h.tenant();
    const email = `nul-${Date.now()}@example.com`;
    const res = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t.publishableKey,
      body: { email, password: 'correct horse battery staple', name: 'Ann\u0000e' },
    });
    assertRefused(res, 'name', 'body');
    const rows = await h.deps.db.kysely.selectFrom('users').select('id').where('email', '=', email).execute();
    assert.equal(rows.length, 0, 'nothing written');
  });

  it('400 names a nested field and a key holding NUL', async () => {
    const t = await h.tenant();
    const admin = await t.admin();
    const nested = await h.request({
      method: 'POST',
      url: '/api/admin/webhooks',
      token: admin.accessToken,
      body: { url: 'https://hooks.example.com/x', event_types: ['user.created', 'user.\u0000'] },
    });
    assertRefused(nested, 'event_types.1', 'body');
    const key = await h.request({
      method: 'PUT',
      url: `/api/vault/connections/github`,
      token: (await t.user()).accessToken,
      body: { auth_data: { 'tok\u0000en': 'x' } },
    });
    assertRefused(key, 'auth_data', 'body');
  });

  it('400 names the query parameter, path parameter and header holding NUL', async () => {
    const t = await h.tenant();
    const admin = await t.admin();
    assertRefused(
      await h.request({ method: 'GET', url: '/api/admin/users?cursor=usr_%00', token: admin.accessToken }),
      'cursor',
      'querystring',
    );
    assertRefused(
      await h.request({ method: 'GET', url: '/api/admin/users/usr_%00x', token: admin.accessToken }),
      'id',
      'params',
    );
    assertRefused(
      await h.request({
        method: 'POST',
        url: '/api/auth/login',
        tenant: `${t.publishableKey}\u0000`,
        body: { email: 'a@example.com', password: 'whatever it is' },
      }),
      'x-gatehouse-tenant',
      'headers',
    );
  });

  it('400 for other control characters in identifiers; free text keeps tabs and newlines', async () => {
    const t = await h.tenant();
    const user = await t.user();
    assertRefused(
      await h.request({ method: 'GET', url: '/api/admin/users?cursor=a%1Bb', token: (await t.admin()).accessToken }),
      'cursor',
      'querystring',
    );
    const res = await h.request({
      method: 'PATCH',
      url: '/api/auth/me',
      token: user.accessToken,
      body: { name: 'Ann\tMarie\nSmith' },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.name, 'Ann\tMarie\nSmith');
  });
});

describe('deep, poisoned and out-of-range JSON', () => {
  it('400 names the body for JSON nested 5,000 levels, before it is parsed', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const deep = `${'['.repeat(5000)}1${']'.repeat(5000)}`;
    const res = await h.request({
      method: 'PUT',
      url: '/api/vault/connections/github',
      token: user.accessToken,
      headers: json,
      body: `{"auth_data":{"a":${deep}}}`,
    });
    assertRefused(res, 'body', 'body');
    assert.match(res.body.error.message, /deeper than 64 levels/);
    const rows = await h.deps.db.kysely.selectFrom('connections').select('id').where('user_id', '=', user.id).execute();
    assert.equal(rows.length, 0, 'nothing written');
  });

  it('brackets inside strings do not count as depth', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const res = await h.request({
      method: 'PATCH',
      url: '/api/auth/me',
      token: user.accessToken,
      body: { name: `${'['.repeat(100)}{"` },
    });
    assert.equal(res.status, 200, res.text);
  });

  it('400 names __proto__ and constructor.prototype keys', async () => {
    const t = await h.tenant();
    for (const body of [
      '{"email":"a@example.com","password":"x","__proto__":{"role":"operator"}}',
      '{"email":"a@example.com","password":"x","constructor":{"prototype":{"role":"operator"}}}',
    ]) {
      const res = await h.request({
        method: 'POST',
        url: '/api/auth/login',
        tenant: t.publishableKey,
        headers: json,
        body,
      });
      assertRefused(res, '__proto__', 'body');
    }
    const form = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      // An own __proto__ key, as a form parser makes it.
      form: JSON.parse('{"username":"a@example.com","password":"x","__proto__":"y"}'),
    });
    assertRefused(form, '__proto__', 'body');
  });

  it('400 names a number beyond 2^53 (and 1e400, which parses to Infinity) before it reaches a bigint column', async () => {
    const t = await h.tenant();
    const user = await t.user();
    // An OAuth2 expires_in in auth_data sets the connection's expiry: now + 1e300 s fits no column.
    for (const value of ['9007199254740993', '1e300', '1e400', '-1e300']) {
      const res = await h.request({
        method: 'PUT',
        url: '/api/vault/connections/github',
        token: user.accessToken,
        headers: json,
        body: `{"auth_data":{"access_token":"x","expires_in":${value}}}`,
      });
      assertRefused(res, 'auth_data.expires_in', 'body');
    }
    const rows = await h.deps.db.kysely.selectFrom('connections').select('id').where('user_id', '=', user.id).execute();
    assert.equal(rows.length, 0, 'nothing written');
  });

  it('400 names a query parameter that validation would coerce to Infinity', async () => {
    const t = await h.tenant();
    const user = await t.user();
    // Ajv coerces "Infinity" to a number it counts as an integer, then skips minimum and maximum.
    for (const value of ['Infinity', '-Infinity', '1e400']) {
      const res = await h.request({
        method: 'GET',
        url: `/api/vault/connections?limit=${value}`,
        token: user.accessToken,
      });
      assertRefused(res, 'limit', 'querystring');
    }
  });
});
