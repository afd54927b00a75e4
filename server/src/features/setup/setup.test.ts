import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, STRONG_PASSWORD } from '../../../test/harness.js';
import { issueSetupToken } from './setup.service.js';

let h: Harness;
before(async () => {
  h = await createHarness({}, { operator: false });
});
after(() => h.close());

describe('POST /api/setup', () => {
  it('201 creates the first operator once; the token then stops working and no new one is issued', async () => {
    const stale = await issueSetupToken(h.deps);
    const token = await issueSetupToken(h.deps);
    assert.match(token ?? '', /^gst_/);
    const oldToken = await h.request({
      method: 'POST',
      url: '/api/setup',
      body: { token: stale, email: 'op@example.com', password: STRONG_PASSWORD },
    });
    assert.equal(oldToken.status, 401, 'a token from an earlier start is dead');

    const weak = await h.request({
      method: 'POST',
      url: '/api/setup',
      body: { token, email: 'op@example.com', password: 'short' },
    });
    assert.equal(weak.status, 400);

    const res = await h.request({
      method: 'POST',
      url: '/api/setup',
      body: { token, email: 'op@example.com', password: STRONG_PASSWORD },
    });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.user.role, 'operator');
    const tenants = await h.request({ method: 'GET', url: '/api/admin/tenants', token: res.body.access_token });
    assert.equal(tenants.status, 200, 'the new operator can administer tenants');

    const again = await h.request({
      method: 'POST',
      url: '/api/setup',
      body: { token, email: 'op2@example.com', password: STRONG_PASSWORD },
    });
    assert.equal(again.status, 401);
    assert.equal(await issueSetupToken(h.deps), null);
  });

  it('201 once for parallel requests with one token: one operator, the rest 401', async () => {
    const own = await createHarness({}, { operator: false });
    try {
      const token = await issueSetupToken(own.deps);
      const results = await Promise.all(
        [1, 2, 3, 4].map((i) =>
          own.request({
            method: 'POST',
            url: '/api/setup',
            body: { token, email: `op${i}@example.com`, password: STRONG_PASSWORD },
          }),
        ),
      );
      assert.deepEqual(results.map((r) => r.status).sort(), [201, 401, 401, 401]);
      const operators = await own.deps.db.kysely
        .selectFrom('users')
        .select('id')
        .where('role', '=', 'operator')
        .execute();
      assert.equal(operators.length, 1);
    } finally {
      await own.close();
    }
  });

  it('keeps the token when making the account fails, so setup can be retried', async () => {
    const own = await createHarness({}, { operator: false });
    try {
      const token = await issueSetupToken(own.deps);
      const taken = await own.request({
        method: 'POST',
        url: '/api/auth/register',
        body: { email: 'taken@example.com', password: STRONG_PASSWORD },
      });
      assert.equal(taken.status, 201);
      const clash = await own.request({
        method: 'POST',
        url: '/api/setup',
        body: { token, email: 'taken@example.com', password: STRONG_PASSWORD },
      });
      assert.equal(clash.status, 409);
      const retry = await own.request({
        method: 'POST',
        url: '/api/setup',
        body: { token, email: 'op@example.com', password: STRONG_PASSWORD },
      });
      assert.equal(retry.status, 201, retry.text);
    } finally {
      await own.close();
    }
  });
});
