import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, fieldsOf, type Harness } from '../../../test/harness.js';
import { keyCalls, unknownKey } from './api-keys.fixtures.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const { me, remove, verify, createKey } = keyCalls(() => h);

describe('POST /api/keys/verify', () => {
  it('200 VALID with key_id, user_id, scopes and expires_at', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const key = await createKey(user.accessToken, { name: 'k', scopes: ['chat:write'], expires_in: 7200 });
    const res = await verify(service, key.key);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, {
      valid: true,
      code: 'VALID',
      key_id: key.id,
      user_id: user.id,
      tenant_id: t.id,
      scopes: ['chat:write'],
      expires_at: key.expires_at,
    });
  });

  it('200 NOT_FOUND for an unknown key, a bad checksum, garbage and another tenant’s key, revealing nothing', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const service = await t1.serviceKey();
    const foreign = await createKey((await t2.user()).accessToken, { name: 'theirs', scopes: ['secret'] });
    const own = await createKey((await t1.user()).accessToken);
    const lastChar = own.key.at(-1);
    const badChecksum = `${own.key.slice(0, -1)}${lastChar === 'A' ? 'B' : 'A'}`;
    for (const key of [unknownKey(), badChecksum, 'hello', foreign.key]) {
      const res = await verify(service, key);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(
        res.body,
        {
          valid: false,
          code: 'NOT_FOUND',
          key_id: null,
          user_id: null,
          tenant_id: t1.id,
          scopes: [],
          expires_at: null,
        },
        key,
      );
    }
    assert.equal((await verify(service, own.key)).body.code, 'VALID', 'the service key itself works');
  });

  it('200 EXPIRED once expires_in has passed', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const key = await createKey(user.accessToken, { name: 'k', expires_in: 60 });
    assert.equal((await verify(service, key.key)).body.code, 'VALID');
    advance(60_001);
    const res = await verify(service, key.key);
    assert.equal(res.status, 200);
    assert.equal(res.body.valid, false);
    assert.equal(res.body.code, 'EXPIRED');
    assert.equal(res.body.key_id, key.id);
  });

  it('200 REVOKED after DELETE', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const key = await createKey(user.accessToken);
    assert.equal((await remove(user.accessToken, key.id)).status, 204);
    const res = await verify(service, key.key);
    assert.equal(res.status, 200);
    assert.equal(res.body.valid, false);
    assert.equal(res.body.code, 'REVOKED');
  });

  it('200 DISABLED when the owner is disabled, and VALID again once re-enabled', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const key = await createKey(user.accessToken);
    const patch = (disabled: boolean) =>
      h.request({
        method: 'PATCH',
        url: `/api/admin/users/${user.id}`,
        token: h.operator.token,
        tenant: t.id,
        body: { disabled },
      });
    assert.equal((await patch(true)).status, 200);
    const res = await verify(service, key.key);
    assert.equal(res.status, 200);
    assert.equal(res.body.valid, false);
    assert.equal(res.body.code, 'DISABLED');
    assert.equal(res.body.user_id, user.id);
    assert.equal((await me(key.key)).status, 401, 'a disabled user’s key does not authenticate');
    assert.equal((await patch(false)).status, 200);
    assert.equal((await verify(service, key.key)).body.code, 'VALID');
  });

  it('401 without a credential and with a revoked service key', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = await createKey(user.accessToken);
    const anonymous = await h.request({ method: 'POST', url: '/api/keys/verify', body: { key: key.key } });
    assert.equal(anonymous.status, 401);
    const created = await h.request({
      method: 'POST',
      url: '/api/admin/service-keys',
      token: h.operator.token,
      tenant: t.id,
      body: { name: 'old backend' },
    });
    await h.request({
      method: 'DELETE',
      url: `/api/admin/service-keys/${created.body.id}`,
      token: h.operator.token,
      tenant: t.id,
    });
    const revoked = await verify(created.body.key, key.key);
    assert.equal(revoked.status, 401);
  });

  it('403 for a user’s access token, a user’s API key and the operator', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = await createKey(user.accessToken);
    for (const token of [user.accessToken, key.key, h.operator.token]) {
      const res = await verify(token, key.key);
      assert.equal(res.status, 403, res.text);
      assert.equal(res.body.error.code, 'forbidden');
    }
  });

  it('400 names the missing key', async () => {
    const t = await h.tenant();
    const service = await t.serviceKey();
    const res = await h.request({ method: 'POST', url: '/api/keys/verify', token: service, body: {} });
    assert.equal(res.status, 400);
    assert.ok(fieldsOf(res).includes('key'), res.text);
  });
});

describe('POST /api/keys/verify with ratelimits and credits (Unkey’s shape)', () => {
  const verifyWith = (service: string, body: Record<string, unknown>) =>
    h.request({ method: 'POST', url: '/api/keys/verify', token: service, body });

  it('counts the plan’s requests limit (shared with the user’s own calls) and answers RATE_LIMITED with what remains', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    await me(user.apiKey); // 1 of the free plan's 100
    const first = await verifyWith(service, { key: user.apiKey, ratelimits: [{ name: 'requests', cost: 98 }] });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.code, 'VALID');
    assert.equal(first.body.ratelimits.length, 1);
    assert.deepEqual(
      { ...first.body.ratelimits[0], reset: undefined },
      { name: 'requests', limit: 100, remaining: 1, reset: undefined, exceeded: false },
    );
    const second = await verifyWith(service, { key: user.apiKey, ratelimits: [{ name: 'requests', cost: 2 }] });
    assert.equal(second.status, 200);
    assert.equal(second.body.valid, false);
    assert.equal(second.body.code, 'RATE_LIMITED');
    assert.equal(second.body.ratelimits[0].remaining, 0);
    assert.equal(second.body.key_id, first.body.key_id);
    assert.equal((await me(user.apiKey)).status, 429, 'the user’s own calls share the count');
  });

  it('the app’s own named limit with limit and duration; cost 0 only reads it', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const search = { name: 'search', limit: 2, duration: 60_000 };
    assert.equal((await verifyWith(service, { key: user.apiKey, ratelimits: [search] })).body.code, 'VALID');
    const peek = await verifyWith(service, { key: user.apiKey, ratelimits: [{ ...search, cost: 0 }] });
    assert.equal(peek.body.ratelimits[0].remaining, 1);
    assert.equal((await verifyWith(service, { key: user.apiKey, ratelimits: [search] })).body.code, 'VALID');
    const over = await verifyWith(service, { key: user.apiKey, ratelimits: [search] });
    assert.equal(over.body.code, 'RATE_LIMITED');
    assert.ok(Date.parse(over.body.ratelimits[0].reset) <= h.clock.now() + 60_000);
  });

  it('400 naming the field: an own limit without limit or duration, or a plan limit given a limit', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const noLimit = await verifyWith(service, { key: user.apiKey, ratelimits: [{ name: 'search' }] });
    assert.equal(noLimit.status, 400);
    assert.deepEqual(fieldsOf(noLimit), ['ratelimits.0.limit']);
    const noDuration = await verifyWith(service, { key: user.apiKey, ratelimits: [{ name: 'x', limit: 5 }] });
    assert.deepEqual(fieldsOf(noDuration), ['ratelimits.0.duration']);
    const override = await verifyWith(service, {
      key: user.apiKey,
      ratelimits: [{ name: 'requests', limit: 5, duration: 1000 }],
    });
    assert.deepEqual(fieldsOf(override), ['ratelimits.0.limit']);
  });

  it('credits charge the user’s token budget; USAGE_EXCEEDED charges nothing and reports what remains', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const charged = await verifyWith(service, { key: user.apiKey, credits: { cost: 9_500 } });
    assert.equal(charged.body.code, 'VALID');
    assert.deepEqual(charged.body.credits, { cost: 9_500, remaining: 500, limit: 10_000 });
    const refused = await verifyWith(service, { key: user.apiKey, credits: { cost: 501 } });
    assert.equal(refused.status, 200);
    assert.equal(refused.body.valid, false);
    assert.equal(refused.body.code, 'USAGE_EXCEEDED');
    assert.deepEqual(refused.body.credits, { cost: 501, remaining: 500, limit: 10_000 });
    const usage = (await h.request({ method: 'GET', url: '/api/usage', token: user.apiKey })).body;
    assert.equal(usage.tokens_used, 9_500);
    // A key that is not valid is not charged and reports no credits.
    const unknown = await verifyWith(service, { key: unknownKey(), credits: { cost: 1 } });
    assert.equal(unknown.body.code, 'NOT_FOUND');
    assert.equal(unknown.body.credits, undefined);
  });

  it('a rate-limited verify charges no credits', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const body = {
      key: user.apiKey,
      ratelimits: [{ name: 'once', limit: 1, duration: 60_000 }],
      credits: { cost: 10 },
    };
    assert.equal((await verifyWith(service, body)).body.credits.remaining, 9_990);
    const limited = await verifyWith(service, body);
    assert.equal(limited.body.code, 'RATE_LIMITED');
    assert.equal(limited.body.credits.remaining, 9_990);
  });
});
