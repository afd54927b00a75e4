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
  it('201 creates the first operator once; every token issued then stops working and no new one is issued', async () => {
    const earlier = await issueSetupToken(h.deps);
    const token = await issueSetupToken(h.deps);
    assert.match(token ?? '', /^gst_/);
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

    for (const used of [token, earlier]) {
      const again = await h.request({
        method: 'POST',
        url: '/api/setup',
        body: { token: used, email: 'op2@example.com', password: STRONG_PASSWORD },
      });
      assert.equal(again.status, 401);
    }
    assert.equal(await issueSetupToken(h.deps), null);
  });

  it('201 with the token of an earlier start too: every printed token works until one is used', async () => {
    const own = await createHarness({}, { operator: false });
    try {
      const first = await issueSetupToken(own.deps);
      const second = await issueSetupToken(own.deps);
      const res = await own.request({
        method: 'POST',
        url: '/api/setup',
        body: { token: first, email: 'op@example.com', password: STRONG_PASSWORD },
      });
      assert.equal(res.status, 201, res.text);
      const other = await own.request({
        method: 'POST',
        url: '/api/setup',
        body: { token: second, email: 'op2@example.com', password: STRONG_PASSWORD },
      });
      assert.equal(other.status, 401);
    } finally {
      await own.close();
    }
  });

  it('201 once for parallel requests with the tokens of two instances started at once (PostgreSQL): one operator', {
    skip: !process.env.TEST_DATABASE_URL && 'needs TEST_DATABASE_URL (two instances)',
  }, async () => {
    const own = await createHarness({}, { operator: false });
    try {
      const second = await own.secondInstance();
      const tokens = await Promise.all([issueSetupToken(own.deps), issueSetupToken(second.deps)]);
      assert.ok(tokens[0] && tokens[1] && tokens[0] !== tokens[1]);
      const instances = [own, second];
      for (const [i, token] of tokens.entries()) {
        // A weak password is refused only once the token is accepted (401 otherwise).
        const weak = await (instances[1 - i] ?? own).request({
          method: 'POST',
          url: '/api/setup',
          body: { token, email: 'op@example.com', password: 'short' },
        });
        assert.equal(weak.status, 400, `the token printed by instance ${i + 1} works: ${weak.text}`);
      }
      const results = await Promise.all(
        [0, 1, 0, 1].map((i, n) =>
          (instances[(n + 1) % 2] ?? own).request({
            method: 'POST',
            url: '/api/setup',
            body: { token: tokens[i], email: `op${n}@example.com`, password: STRONG_PASSWORD },
          }),
        ),
      );
      assert.deepEqual(
        results.map((r) => r.status).sort(),
        [201, 401, 401, 401],
        results.map((r) => r.text).join('\n'),
      );
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
