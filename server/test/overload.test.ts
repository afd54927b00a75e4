import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, STRONG_PASSWORD } from './harness.js';

// Expensive hashes, one at a time, one waiting: a burst must overflow at once rather than queue.
let h: Harness;
before(async () => {
  h = await createHarness({
    ARGON2_MEMORY_KIB: '65536',
    ARGON2_ITERATIONS: '3',
    HASH_CONCURRENCY: '1',
    HASH_QUEUE_MAX: '1',
  });
});
after(() => h.close());

describe('password hashing under overload', () => {
  it('503 overloaded with Retry-After for the excess; the admitted requests succeed', async () => {
    const t = await h.tenant();
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        h.request({
          method: 'POST',
          url: '/api/auth/register',
          tenant: t.publishableKey,
          body: { email: `burst${i}@example.com`, password: STRONG_PASSWORD },
        }),
      ),
    );
    const created = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 503);
    assert.equal(created.length + refused.length, 12, results.map((r) => r.status).join(','));
    assert.ok(created.length >= 2, `admitted ${created.length}`);
    assert.ok(refused.length >= 1, 'some were refused');
    for (const r of refused) {
      assert.equal(r.body.error.code, 'overloaded');
      assert.equal(r.headers['retry-after'], '1');
    }
    const users = await h.deps.db.kysely.selectFrom('users').select('id').where('tenant_id', '=', t.id).execute();
    assert.equal(users.length, created.length, 'a refused sign-up writes nothing');
  });
});
