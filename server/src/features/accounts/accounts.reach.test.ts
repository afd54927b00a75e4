import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';

// A tenant service key is created by a tenant admin and reaches no further than one (ADR 0013):
// in the default tenant, where the operator's own account lives, it must not reach the operator's
// vault, budget or live feed.

let h: Harness;
let operatorId: string;
let serviceKey: string;

before(async () => {
  h = await createHarness();
  const me = await h.request({ method: 'GET', url: '/api/auth/me', token: h.operator.token });
  assert.equal(me.status, 200, me.text);
  operatorId = me.body.id;
  const key = await h.request({
    method: 'POST',
    url: '/api/admin/service-keys',
    token: h.operator.token,
    body: { name: 'default-tenant backend' },
  });
  assert.equal(key.status, 201, key.text);
  serviceKey = key.body.key;
});
after(() => h.close());

describe("a default-tenant service key and the operator's account", () => {
  const attempts = (userId: string) => [
    {
      what: 'saveAuth',
      method: 'PUT' as const,
      url: `/api/vault/connections/github?user_id=${userId}`,
      body: { auth_data: { access_token: 'planted' } },
    },
    { what: 'getAuth', method: 'GET' as const, url: `/api/vault/connections/github?user_id=${userId}` },
    {
      what: 'a token reservation',
      method: 'POST' as const,
      url: '/api/admin/usage/reservations',
      body: { user_id: userId, tokens: 1 },
    },
    {
      what: 'a task update',
      method: 'POST' as const,
      url: '/api/admin/realtime/tasks',
      body: { user_id: userId, task: { taskId: 't1', status: 'processing' } },
    },
  ];

  it('403 for the vault, a token reservation and a task update aimed at the operator', async () => {
    for (const attempt of attempts(operatorId)) {
      const res = await h.request({ ...attempt, token: serviceKey });
      assert.equal(res.status, 403, `${attempt.what}: ${res.text}`);
      assert.match(res.body.error.message, /an operator, above your role/, attempt.what);
    }
    const stored = await h.deps.db.kysely
      .selectFrom('connections')
      .select('id')
      .where('owner', '=', operatorId)
      .execute();
    assert.equal(stored.length, 0, 'nothing planted in the operator vault');
  });

  it('2xx for the same calls aimed at an ordinary user of the tenant', async () => {
    const user = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      body: { email: `reach-${Date.now()}@example.com`, password: 'correct horse battery staple' },
    });
    assert.equal(user.status, 201, user.text);
    for (const attempt of attempts(user.body.user.id)) {
      const res = await h.request({ ...attempt, token: serviceKey });
      assert.ok(res.status >= 200 && res.status < 300, `${attempt.what}: ${res.status} ${res.text}`);
    }
  });
});
