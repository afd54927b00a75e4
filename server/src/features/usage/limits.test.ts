import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, type TestResponse } from '../../../test/harness.js';

const pg = Boolean(process.env.TEST_DATABASE_URL);
const redis = Boolean(process.env.TEST_REDIS_URL);

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const me = (request: Harness['request'], token: string) => request({ method: 'GET', url: '/api/auth/me', token });

function tally(responses: TestResponse[]) {
  const ok = responses.filter((r) => r.status === 200).length;
  const limited = responses.filter((r) => r.status === 429);
  return { ok, limited: limited.length, other: responses.length - ok - limited.length, sample: limited[0] };
}

/** 200 requests at once, spread over the given instances: exactly the plan's 100 may pass. */
async function exactlyOneHundred(h: Harness, requests: Harness['request'][]) {
  const t = await h.tenant();
  const user = await t.user(); // the tenant's default plan: free, 100 requests an hour
  const responses = await Promise.all(
    Array.from({ length: 200 }, (_, i) => me(requests[i % requests.length], user.apiKey)),
  );
  const result = tally(responses);
  assert.deepEqual(
    { ok: result.ok, limited: result.limited, other: result.other },
    { ok: 100, limited: 100, other: 0 },
  );
  const res = result.sample as TestResponse;
  assert.equal(res.body.error.code, 'rate_limited');
  assert.equal(res.headers['ratelimit-limit'], '100');
  assert.equal(res.headers['ratelimit-remaining'], '0');
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(retryAfter > 3500 && retryAfter <= 3600, `Retry-After ${retryAfter}`);
}

describe('hourly request limits', () => {
  it('200 concurrent requests on a plan allowing 100 an hour: exactly 100 succeed, the rest 429 rate_limited', async () => {
    await exactlyOneHundred(h, [h.request]);
  });

  it('the same with two instances sharing PostgreSQL and no Redis', {
    skip: !pg && 'needs TEST_DATABASE_URL (SQLite mode is one instance)',
  }, async () => {
    const shared = await createHarness({ REDIS_URL: '' });
    try {
      assert.equal(shared.deps.limiters.store, 'postgres');
      const second = await shared.secondInstance();
      await exactlyOneHundred(shared, [shared.request, second.request]);
    } finally {
      await shared.close();
    }
  });

  it('the same with two instances sharing Redis', {
    skip: !(pg && redis) && 'needs TEST_DATABASE_URL and TEST_REDIS_URL',
  }, async () => {
    assert.equal(h.deps.limiters.store, 'redis');
    const second = await h.secondInstance();
    await exactlyOneHundred(h, [h.request, second.request]);
  });

  it('RateLimit-* headers on every response count down; access token and API key share the user’s count', async () => {
    const t = await h.tenant();
    const user = await t.user();
    await t.putOnPlan(user.id, { requests_per_hour: 3 });
    const first = await me(h.request, user.accessToken);
    assert.equal(first.status, 200);
    assert.equal(first.headers['ratelimit-limit'], '3');
    assert.equal(first.headers['ratelimit-remaining'], '2');
    const reset = Number(first.headers['ratelimit-reset']);
    assert.ok(reset > 3590 && reset <= 3600, `reset ${reset}`);
    assert.equal((await me(h.request, user.apiKey)).headers['ratelimit-remaining'], '1');
    assert.equal((await h.request({ method: 'GET', url: '/api/keys', token: user.apiKey })).status, 200);
    const limited = await me(h.request, user.accessToken);
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error.code, 'rate_limited');
    assert.ok(Number(limited.headers['retry-after']) >= 1);
  });

  it('a key’s own limit counts that key only; the user’s other credentials go on', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const created = await h.request({
      method: 'POST',
      url: '/api/keys',
      token: user.accessToken,
      body: { name: 'tight', requests_per_hour: 2 },
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.requests_per_hour, 2);
    assert.equal(created.body.llm_requests_per_hour, null);
    const key = created.body.key;
    assert.equal((await me(h.request, key)).headers['ratelimit-remaining'], '1');
    assert.equal((await me(h.request, key)).status, 200);
    const limited = await me(h.request, key);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['ratelimit-limit'], '2');
    assert.equal(limited.body.error.details.limit, 'key_requests');
    const other = await me(h.request, user.apiKey);
    assert.equal(other.status, 200, 'the primary key is not limited by the tight one');
    assert.equal(other.headers['ratelimit-limit'], '100');
    // Rotation keeps the key's limits.
    const rotated = await h.request({
      method: 'POST',
      url: `/api/keys/${created.body.id}/rotate`,
      token: user.accessToken,
      body: {},
    });
    assert.equal(rotated.body.requests_per_hour, 2);
  });

  it('400 naming the field for a key limit below 1', async () => {
    const user = await (await h.tenant()).user();
    const res = await h.request({
      method: 'POST',
      url: '/api/keys',
      token: user.accessToken,
      body: { name: 'k', requests_per_hour: 0 },
    });
    assert.equal(res.status, 400);
    assert.match(res.body.error.message, /requests_per_hour/);
  });

  it('a plan limit of 0 allows nothing: 0 is not unlimited', async () => {
    const t = await h.tenant();
    const user = await t.user();
    await t.putOnPlan(user.id, { requests_per_hour: 0 });
    const res = await me(h.request, user.apiKey);
    assert.equal(res.status, 429);
    assert.equal(res.headers['ratelimit-limit'], '0');
  });

  it('a plan change applies to the count already made this hour', async () => {
    const t = await h.tenant();
    const user = await t.user();
    await t.putOnPlan(user.id, { requests_per_hour: 1 });
    assert.equal((await me(h.request, user.apiKey)).status, 200);
    assert.equal((await me(h.request, user.apiKey)).status, 429);
    await t.putOnPlan(user.id, { requests_per_hour: 5 });
    const res = await me(h.request, user.apiKey);
    assert.equal(res.status, 200);
    assert.equal(res.headers['ratelimit-remaining'], '2', '3 counted of 5 (the refused one counts too)');
  });

  it('no headers and no limit on an unlimited plan; GET /api/usage answers when the limit is used up', async () => {
    const t = await h.tenant();
    const unlimited = await t.user();
    await t.putOnPlan(unlimited.id, {});
    const res = await me(h.request, unlimited.apiKey);
    assert.equal(res.status, 200);
    assert.equal(res.headers['ratelimit-limit'], undefined);

    const limited = await t.user();
    await t.putOnPlan(limited.id, { requests_per_hour: 1 });
    await me(h.request, limited.apiKey);
    assert.equal((await me(h.request, limited.apiKey)).status, 429);
    const usage = await h.request({ method: 'GET', url: '/api/usage', token: limited.apiKey });
    assert.equal(usage.status, 200, usage.text);
    assert.equal(usage.body.limits.requests_per_hour.remaining, 0);
  });

  it('operators and service keys are not on plans and are not limited', async () => {
    const t = await h.tenant();
    const service = await t.serviceKey();
    const res = await h.request({ method: 'GET', url: '/api/admin/plans', token: service });
    assert.equal(res.status, 200);
    assert.equal(res.headers['ratelimit-limit'], undefined);
    const op = await h.request({ method: 'GET', url: '/api/auth/me', token: h.operator.token });
    assert.equal(op.headers['ratelimit-limit'], undefined);
  });
});

describe('RATE_LIMITS=off', () => {
  it('limits no one, and /readyz says so', async () => {
    const off = await createHarness({ RATE_LIMITS: 'off' });
    try {
      const t = await off.tenant();
      const user = await t.user();
      await t.putOnPlan(user.id, { requests_per_hour: 1 });
      for (let i = 0; i < 3; i++) {
        const res = await me(off.request, user.apiKey);
        assert.equal(res.status, 200);
        assert.equal(res.headers['ratelimit-limit'], undefined);
      }
      const ready = await off.request({ method: 'GET', url: '/readyz' });
      assert.equal(ready.body.checks.rate_limits, 'off (RATE_LIMITS=off)');
    } finally {
      await off.close();
    }
  });
});

describe('Redis unavailable', () => {
  // Nothing listens on port 1: Redis never becomes ready, as when it goes away.
  const unreachable = { REDIS_URL: 'redis://127.0.0.1:1' };

  it('fail-open (default): requests are served, limits hold per instance, /readyz says degraded, the log says why', async () => {
    const open = await createHarness(unreachable);
    try {
      const t = await open.tenant();
      const user = await t.user();
      await t.putOnPlan(user.id, { requests_per_hour: 2 });
      assert.equal((await me(open.request, user.apiKey)).status, 200);
      assert.equal((await me(open.request, user.apiKey)).status, 200);
      assert.equal((await me(open.request, user.apiKey)).status, 429, 'the in-memory insurance counts');
      const ready = await open.request({ method: 'GET', url: '/readyz' });
      assert.equal(ready.status, 200);
      assert.equal(ready.body.status, 'degraded');
      assert.match(ready.body.checks.rate_limits, /per instance/);
      assert.ok(open.logs.some((line) => /redis unavailable: rate limits now count per instance/.test(line)));
    } finally {
      await open.close();
    }
  });

  it('fail-closed: limited requests get 503 limits_unavailable and /readyz is not ready', async () => {
    const closed = await createHarness({ ...unreachable, RATE_LIMIT_STORE_FAILURE: 'closed' });
    try {
      const t = await closed.tenant();
      const user = await t.user();
      const res = await me(closed.request, user.apiKey);
      assert.equal(res.status, 503);
      assert.equal(res.body.error.code, 'limits_unavailable');
      assert.ok(res.headers['retry-after']);
      const ready = await closed.request({ method: 'GET', url: '/readyz' });
      assert.equal(ready.status, 503);
      assert.match(ready.body.checks.rate_limits, /refused/);
    } finally {
      await closed.close();
    }
  });
});
