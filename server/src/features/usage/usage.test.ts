import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, type TestTenant, type TestUser } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

/** An LLM call made by the app's backend: reserve, then settle with what it used. */
async function llmCall(t: { service: string }, user: TestUser, usage: Record<string, unknown>) {
  const held = await h.request({
    method: 'POST',
    url: '/api/admin/usage/reservations',
    token: t.service,
    body: { user_id: user.id, tokens: 1_000 },
  });
  assert.equal(held.status, 201, held.text);
  const settled = await h.request({
    method: 'POST',
    url: `/api/admin/usage/reservations/${held.body.id}/settle`,
    token: t.service,
    body: usage,
  });
  assert.equal(settled.status, 200, settled.text);
}

async function tenantWithBackend(): Promise<TestTenant & { service: string }> {
  const t = await h.tenant();
  return { ...t, service: await t.serviceKey() };
}

const today = () => new Date(h.clock.now()).toISOString().slice(0, 10);

describe('GET /api/usage', () => {
  it('period totals, what is left, limits now and usage per day, from requests and LLM calls', async () => {
    const t = await tenantWithBackend();
    const user = await t.user();
    for (let i = 0; i < 3; i++) await h.request({ method: 'GET', url: '/api/auth/me', token: user.apiKey });
    await llmCall(t, user, {
      prompt_tokens: 120,
      completion_tokens: 80,
      model: 'gpt-4o-mini',
      provider: 'openai',
      cost_usd: 0.0012,
    });
    await llmCall(t, user, { prompt_tokens: 10, completion_tokens: 0, model: 'glm-4', status: 'upstream_error' });

    const res = await h.request({ method: 'GET', url: '/api/usage', token: user.accessToken });
    assert.equal(res.status, 200, res.text);
    const u = res.body;
    assert.equal(u.plan, 'free');
    assert.deepEqual([u.monthly_limit, u.tokens_used, u.tokens_reserved, u.tokens_remaining], [10_000, 210, 0, 9_790]);
    assert.equal(u.limits.requests_per_hour.limit, 100);
    assert.equal(u.limits.requests_per_hour.remaining, 97, 'three requests counted; reading usage is free');
    assert.equal(u.limits.llm_requests_per_hour.limit, 50);
    assert.equal(
      u.limits.llm_requests_per_hour.remaining,
      50,
      'the backend’s calls did not go through Gatehouse’s LLM limit',
    );
    assert.equal(u.limits.key_requests_per_hour, null, 'the key has no limit of its own');
    assert.equal(u.limits.max_tokens_per_request, 1_000);
    assert.deepEqual(u.totals, {
      requests: 3,
      llm_requests: 2,
      errors: 1,
      prompt_tokens: 130,
      completion_tokens: 80,
      total_tokens: 210,
      cost_usd: 0.0012,
    });
    assert.deepEqual(
      u.daily.map((d: { date: string; total_tokens: number }) => [d.date, d.total_tokens]),
      [[today(), 210]],
    );
  });

  it('/me and vscode-config show seed 001’s tokens_used, tokens_remaining and monthly_limit; never a provider key', async () => {
    const t = await tenantWithBackend();
    const user = await t.user();
    const fresh = (await h.request({ method: 'GET', url: '/api/auth/me', token: user.accessToken })).body;
    assert.equal(fresh.usage.tokens_used, 0);
    await llmCall(t, user, { prompt_tokens: 700, completion_tokens: 300 });
    // /me is served from a cache; the settlement on this instance must show at once.
    const me = (await h.request({ method: 'GET', url: '/api/auth/me', token: user.accessToken })).body;
    assert.equal(me.plan.name, 'free');
    assert.deepEqual([me.usage.tokens_used, me.usage.tokens_remaining, me.usage.monthly_limit], [1_000, 9_000, 10_000]);

    const config = await h.request({ method: 'GET', url: '/api/auth/vscode-config', token: user.apiKey });
    assert.equal(config.status, 200, config.text);
    assert.equal(config.body.api_endpoint, 'http://gatehouse.test');
    assert.equal(config.body.llm_base_url, 'http://gatehouse.test/api/llm/v1');
    assert.equal(config.body.user.id, user.id);
    assert.equal(config.body.user.email, user.email);
    assert.equal(config.body.user.subscription, 'free');
    assert.equal(config.body.user.tokens_remaining, 9_000);
    assert.equal(config.body.user.monthly_limit, 10_000);
    assert.doesNotMatch(config.text, /glm_api_key|backend_api_key|provider/);
  });
});

describe('GET /api/admin/usage', () => {
  it('the tenant’s totals, per user, per model and over time; filtered by user; nothing of other tenants', async () => {
    const t = await tenantWithBackend();
    const admin = await t.admin();
    const alice = await t.user();
    const bob = await t.user();
    await llmCall(t, alice, { prompt_tokens: 1_000, completion_tokens: 500, model: 'gpt-4o' });
    await llmCall(t, bob, { prompt_tokens: 100, completion_tokens: 100, model: 'gpt-4o' });
    await llmCall(t, bob, { prompt_tokens: 50, completion_tokens: 50, model: 'glm-4' });
    const other = await tenantWithBackend();
    await llmCall(other, await other.user(), { prompt_tokens: 9_000, completion_tokens: 0, model: 'gpt-4o' });

    const res = await h.request({ method: 'GET', url: '/api/admin/usage', token: admin.accessToken });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.granularity, 'day');
    assert.equal(res.body.totals.total_tokens, 1_800);
    assert.equal(res.body.totals.llm_requests, 3);
    // Largest token use first; the admin made requests (promoting, this call) but used no tokens.
    assert.deepEqual(
      res.body.by_user.map((u: { user_id: string; total_tokens: number }) => [u.user_id, u.total_tokens]),
      [
        [alice.id, 1_500],
        [bob.id, 300],
        [admin.id, 0],
      ],
    );
    assert.deepEqual(
      res.body.by_model.map((m: { model: string; total_tokens: number }) => [m.model, m.total_tokens]),
      [
        ['gpt-4o', 1_700],
        ['glm-4', 100],
      ],
    );
    assert.equal(res.body.series.at(-1).bucket_start, `${today()}T00:00:00.000Z`);

    const hourly = await h.request({
      method: 'GET',
      url: `/api/admin/usage?granularity=hour&user_id=${bob.id}`,
      token: t.service,
    });
    assert.equal(hourly.status, 200, hourly.text);
    assert.equal(hourly.body.totals.total_tokens, 300);
    assert.equal(hourly.body.series.length, 1);

    const one = await h.request({ method: 'GET', url: `/api/admin/users/${alice.id}/usage`, token: t.service });
    assert.equal(one.status, 200, one.text);
    assert.equal(one.body.tokens_used, 1_500);
  });

  it('400 naming the field for a bad date or range; 403 for a plain user', async () => {
    const t = await tenantWithBackend();
    const bad = await h.request({ method: 'GET', url: '/api/admin/usage?from=yesterday', token: t.service });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /from/);
    const backwards = await h.request({
      method: 'GET',
      url: '/api/admin/usage?from=2026-02-01&to=2026-01-01',
      token: t.service,
    });
    assert.equal(backwards.status, 400);
    const tooLong = await h.request({
      method: 'GET',
      url: '/api/admin/usage?granularity=hour&from=2025-01-01&to=2026-01-01',
      token: t.service,
    });
    assert.equal(tooLong.status, 400);
    const user = await t.user();
    assert.equal((await h.request({ method: 'GET', url: '/api/admin/usage', token: user.apiKey })).status, 403);
  });
});
