import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, type TestTenant } from '../../../test/harness.js';

const pg = Boolean(process.env.TEST_DATABASE_URL);

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

/** Token reservations through the admin API, as an app backend with a service key calls them. */
async function backend(h: Harness, t: TestTenant) {
  const token = await t.serviceKey();
  const call = (request: Harness['request'], method: 'GET' | 'POST', url: string, body?: unknown) =>
    request({ method, url, token, body });
  return {
    reserve: (userId: string, tokens: number, extra: Record<string, unknown> = {}, request = h.request) =>
      call(request, 'POST', '/api/admin/usage/reservations', { user_id: userId, tokens, ...extra }),
    settle: (id: string, usage: Record<string, unknown>, request = h.request) =>
      call(request, 'POST', `/api/admin/usage/reservations/${id}/settle`, usage),
    release: (id: string) => call(h.request, 'POST', `/api/admin/usage/reservations/${id}/release`),
    events: () => call(h.request, 'GET', '/api/admin/events?type=quota.exceeded'),
  };
}

const budgetOf = async (token: string) => (await h.request({ method: 'GET', url: '/api/auth/me', token })).body.usage;

/** 100 reservations of 1,000 tokens at once against the free plan's 10,000, spread over instances. */
async function hundredAgainstTen(h: Harness, requests: Harness['request'][]) {
  const t = await h.tenant();
  const user = await t.user();
  const api = await backend(h, t);
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) => api.reserve(user.id, 1_000, {}, requests[i % requests.length])),
  );
  const granted = results.filter((r) => r.status === 201);
  const refused = results.filter((r) => r.status === 429);
  assert.equal(granted.length, 10, 'exactly the ten that fit');
  assert.equal(refused.length, 90, results.find((r) => r.status !== 201 && r.status !== 429)?.text);
  assert.equal(refused[0].body.error.code, 'quota_exceeded');
  assert.ok(Number(refused[0].headers['retry-after']) > 0);

  // Settle each with a different real use; the budget must equal exactly what was charged.
  let charged = 0;
  await Promise.all(
    granted.map((r, i) => {
      const prompt = 100 + i * 7;
      const completion = 50 + i * 13;
      charged += prompt + completion;
      return api.settle(
        r.body.id,
        { prompt_tokens: prompt, completion_tokens: completion },
        requests[i % requests.length],
      );
    }),
  );
  const budget = await budgetOf(user.apiKey);
  assert.deepEqual(
    { used: budget.tokens_used, reserved: budget.tokens_reserved, remaining: budget.tokens_remaining },
    { used: charged, reserved: 0, remaining: 10_000 - charged },
  );
}

describe('token reservations', () => {
  it('100 concurrent reservations against a budget that fits 10: 10 granted; after settling, used = the exact sum charged', async () => {
    await hundredAgainstTen(h, [h.request]);
  });

  it('the same across two instances sharing PostgreSQL', {
    skip: !pg && 'needs TEST_DATABASE_URL (SQLite mode is one instance)',
  }, async () => {
    const second = await h.secondInstance();
    await hundredAgainstTen(h, [h.request, second.request]);
  });

  it('release frees the hold; settle and release answer 409 once closed and 404 for an unknown or foreign id', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const api = await backend(h, t);
    const held = await api.reserve(user.id, 4_000);
    assert.equal(held.status, 201, held.text);
    assert.equal(held.body.budget.tokens_reserved, 4_000);
    assert.equal(held.body.budget.tokens_remaining, 6_000);
    const released = await api.release(held.body.id);
    assert.equal(released.status, 200, released.text);
    assert.deepEqual([released.body.tokens_reserved, released.body.tokens_remaining], [0, 10_000]);
    assert.equal((await api.release(held.body.id)).status, 409);
    const settled = await api.settle(held.body.id, { prompt_tokens: 1, completion_tokens: 1 });
    assert.equal(settled.status, 409);
    assert.equal(settled.body.error.details.status, 'released');

    const other = await h.tenant();
    const foreign = await backend(h, other);
    assert.equal((await foreign.release((await api.reserve(user.id, 10)).body.id)).status, 404);
    assert.equal((await api.settle('rsv_nope', { prompt_tokens: 1, completion_tokens: 0 })).status, 404);
  });

  it('a reservation never settled expires and frees its tokens; settled late, it is still charged', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const api = await backend(h, t);
    const forgotten = await api.reserve(user.id, 9_000, { ttl_seconds: 60 });
    assert.equal(forgotten.status, 201);
    assert.equal((await api.reserve(user.id, 2_000)).status, 429);
    advance(61_000);
    const next = await api.reserve(user.id, 2_000);
    assert.equal(next.status, 201, 'the expired hold no longer counts');
    assert.equal(next.body.budget.tokens_reserved, 2_000);
    const late = await api.settle(forgotten.body.id, { prompt_tokens: 300, completion_tokens: 200 });
    assert.equal(late.status, 200, late.text);
    assert.deepEqual([late.body.tokens_used, late.body.tokens_reserved], [500, 2_000]);
    assert.equal((await api.settle(forgotten.body.id, { prompt_tokens: 1, completion_tokens: 0 })).status, 409);
  });

  it('a call that used more than it reserved is charged in full', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const api = await backend(h, t);
    const held = await api.reserve(user.id, 100);
    const settled = await api.settle(held.body.id, { prompt_tokens: 150, completion_tokens: 50 });
    assert.equal(settled.body.tokens_used, 200);
  });

  it('400 naming the field for bad input; 404 for an unknown user', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const api = await backend(h, t);
    const zero = await api.reserve(user.id, 0);
    assert.equal(zero.status, 400);
    assert.match(zero.body.error.message, /tokens/);
    const held = await api.reserve(user.id, 10);
    const negative = await api.settle(held.body.id, { prompt_tokens: -1, completion_tokens: 0 });
    assert.equal(negative.status, 400);
    assert.match(negative.body.error.message, /prompt_tokens/);
    assert.equal((await api.reserve('usr_unknown', 10)).status, 404);
  });

  it('quota.exceeded is emitted once per period, and the budget resets at the month boundary (moved clock)', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const api = await backend(h, t);
    const all = await api.reserve(user.id, 10_000);
    await api.settle(all.body.id, { prompt_tokens: 6_000, completion_tokens: 4_000 });
    const before = await budgetOf(user.apiKey);
    assert.deepEqual([before.tokens_used, before.tokens_remaining, before.monthly_limit], [10_000, 0, 10_000]);
    const refused = await api.reserve(user.id, 1);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, 'quota_exceeded');
    assert.equal(refused.body.error.details.tokens_remaining, 0);
    assert.equal((await api.reserve(user.id, 1)).status, 429);
    const events = (await api.events()).body.data;
    assert.equal(events.length, 1, 'once per period, however often it is hit');
    assert.equal(events[0].data.user_id, user.id);
    assert.equal(events[0].data.plan, 'free');

    // Into the next calendar month (UTC): a fresh budget.
    advance(Date.parse(before.period_end) - h.clock.now() + 1_000);
    const after = await budgetOf(user.apiKey);
    assert.equal(after.period_start, before.period_end);
    assert.deepEqual([after.tokens_used, after.tokens_remaining], [0, 10_000]);
    assert.equal((await api.reserve(user.id, 1)).status, 201);
  });

  it('a plan with a daily token period resets at UTC midnight', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const plan = await t.putOnPlan(user.id, { tokens_per_month: 500, token_period: 'day' });
    assert.equal(plan.token_period, 'day');
    const budget = await budgetOf(user.apiKey);
    const start = new Date(h.clock.now());
    start.setUTCHours(0, 0, 0, 0);
    assert.equal(budget.period_start, start.toISOString());
    assert.equal(Date.parse(budget.period_end) - start.getTime(), 86_400_000);
    assert.equal(budget.monthly_limit, 500);
  });
});
