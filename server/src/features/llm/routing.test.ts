import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { type FakeLlm, startFakeLlm } from '../../../test/fake-llm.js';
import {
  createHarness,
  fieldsOf,
  type Harness,
  listen,
  type TestTenant,
  type TestUser,
} from '../../../test/harness.js';

// Routing table, prices, plan allow-lists, circuit breakers, timeouts, the outbound address
// policy and the response cache, against real local upstreams and the official openai SDK.

let h: Harness;
let primary: FakeLlm;
let backup: FakeLlm;
let baseURL: string;
const BREAKER_COOLDOWN_MS = 400;
before(async () => {
  h = await createHarness({
    OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8',
    LLM_BREAKER_FAILURES: '2',
    LLM_BREAKER_COOLDOWN: `${BREAKER_COOLDOWN_MS}ms`,
    LLM_UPSTREAM_TIMEOUT: '500ms',
    METRICS_TOKEN: 'routing-test-metrics-token-0123',
  });
  [primary, backup] = await Promise.all([startFakeLlm(), startFakeLlm()]);
  baseURL = `${await listen(h.app)}/api/llm/v1`;
});
after(async () => {
  await h.close();
  await Promise.all([primary.close(), backup.close()]);
});

interface Setup {
  t: TestTenant;
  admin: (
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
    url: string,
    body?: Record<string, unknown>,
  ) => ReturnType<Harness['request']>;
  providerIds: Record<string, string>;
}

/** A tenant with providers `primary` (priority 10) and `backup` (1), both offering gpt-test. */
async function setup(): Promise<Setup> {
  const t = await h.tenant();
  const { accessToken } = await t.admin();
  const admin: Setup['admin'] = (method, url, body) => h.request({ method, url, token: accessToken, body });
  const providerIds: Record<string, string> = {};
  for (const [name, fake, priority] of [
    ['primary', primary, 10],
    ['backup', backup, 1],
  ] as const) {
    const res = await admin('POST', '/api/admin/llm/providers', {
      name,
      base_url: fake.url,
      api_key: `sk-${name}`,
      models: ['gpt-test'],
      priority,
    });
    assert.equal(res.status, 201, res.text);
    providerIds[name] = res.body.id;
  }
  return { t, admin, providerIds };
}

const client = (user: TestUser) => new OpenAI({ baseURL, apiKey: user.apiKey, maxRetries: 0 });
const ask = (model = 'gpt-test', extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user' as const, content: 'Say hello' }],
  ...extra,
});
const usageOf = async (user: TestUser) =>
  (await h.request({ method: 'GET', url: '/api/usage', token: user.apiKey })).body;

describe('routing table', () => {
  it('a public name is served by its targets in order, each with its own model id; failover stays in the route', async () => {
    const { t, admin } = await setup();
    const created = await admin('POST', '/api/admin/llm/routes', {
      model: 'smart',
      targets: [
        { provider: 'primary', model: 'vendor/smart-large' },
        { provider: 'backup', model: 'smart-backup' },
      ],
    });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(
      created.body.targets.map((x: { provider: string; model: string }) => [x.provider, x.model]),
      [
        ['primary', 'vendor/smart-large'],
        ['backup', 'smart-backup'],
      ],
    );
    const user = await t.user();
    const first = await client(user).chat.completions.create(ask('smart'));
    assert.equal(first.choices[0].message.content, 'Hello from the fake provider');
    assert.equal(primary.calls.at(-1)?.body.model, 'vendor/smart-large', 'the provider gets its own model id');

    primary.next('fail_500');
    const { response } = await client(user).chat.completions.create(ask('smart')).withResponse();
    assert.equal(response.headers.get('x-gatehouse-provider'), 'backup');
    assert.equal(backup.calls.at(-1)?.body.model, 'smart-backup');

    const models = await h.request({ method: 'GET', url: '/api/llm/v1/models', token: user.apiKey });
    assert.deepEqual(
      models.body.data.map((m: { id: string }) => m.id),
      ['gpt-test', 'smart'],
    );
    const usage = await usageOf(user);
    assert.equal(usage.totals.llm_requests, 2);
    assert.equal(usage.tokens_used, 36, 'usage is recorded under the public name, charged exactly');
  });

  it('400 naming the target for an unknown provider; 409 for a second route of a name; a provider in use cannot be deleted', async () => {
    const { admin, providerIds } = await setup();
    const unknown = await admin('POST', '/api/admin/llm/routes', {
      model: 'x',
      targets: [{ provider: 'primary' }, { provider: 'nope' }],
    });
    assert.equal(unknown.status, 400);
    assert.deepEqual(fieldsOf(unknown), ['targets.1.provider']);
    const empty = await admin('POST', '/api/admin/llm/routes', { model: 'x', targets: [] });
    assert.deepEqual(fieldsOf(empty), ['targets']);
    const route = await admin('POST', '/api/admin/llm/routes', { model: 'x', targets: [{ provider: 'backup' }] });
    assert.equal(route.status, 201);
    assert.equal(route.body.targets[0].model, 'x', 'the public name when no model is given');
    const again = await admin('POST', '/api/admin/llm/routes', { model: 'x', targets: [{ provider: 'primary' }] });
    assert.equal(again.status, 409);
    const inUse = await admin('DELETE', `/api/admin/llm/providers/${providerIds.backup}`);
    assert.equal(inUse.status, 409);
    assert.deepEqual(inUse.body.error.details.routes, ['x']);
    const patched = await admin('PATCH', `/api/admin/llm/routes/${route.body.id}`, {
      targets: [{ provider: providerIds.primary, model: 'y' }],
    });
    assert.equal(patched.status, 200, patched.text);
    assert.deepEqual(patched.body.targets[0], { provider: 'primary', provider_id: providerIds.primary, model: 'y' });
    assert.equal((await admin('DELETE', `/api/admin/llm/providers/${providerIds.backup}`)).status, 204);
    assert.equal((await admin('DELETE', `/api/admin/llm/routes/${route.body.id}`)).status, 204);
    assert.equal((await admin('GET', `/api/admin/llm/routes/${route.body.id}`)).status, 404);
  });

  it('a plan’s allow-list: 403 before any provider is called, and /models lists only what the plan allows', async () => {
    const { t, admin } = await setup();
    await admin('POST', '/api/admin/llm/routes', { model: 'premium', targets: [{ provider: 'primary' }] });
    const user = await t.user();
    await t.putOnPlan(user.id, { allowed_models: ['gpt-*'] });
    const calls = primary.calls.length;
    const refused = await h.request({
      method: 'POST',
      url: '/api/llm/v1/chat/completions',
      token: user.apiKey,
      body: ask('premium'),
    });
    assert.equal(refused.status, 403, refused.text);
    assert.match(refused.body.error.message, /does not include the model "premium"/);
    assert.equal(primary.calls.length, calls, 'no provider was called');
    assert.equal((await usageOf(user)).tokens_reserved, 0);
    const allowed = await client(user).chat.completions.create(ask('gpt-test'));
    assert.equal(allowed.object, 'chat.completion');
    const models = await h.request({ method: 'GET', url: '/api/llm/v1/models', token: user.apiKey });
    assert.deepEqual(
      models.body.data.map((m: { id: string }) => m.id),
      ['gpt-test'],
    );
  });
});

describe('prices and cost', () => {
  it('a call is priced by the table (provider/model first), in the cost header, the simple form and the usage', async () => {
    const { t, admin } = await setup();
    const set = await admin('PUT', '/api/admin/llm/prices', {
      model: 'gpt-test',
      input_usd_per_million: 2.5,
      output_usd_per_million: 10,
    });
    assert.equal(set.status, 200, set.text);
    await admin('PUT', '/api/admin/llm/prices', {
      model: 'backup/gpt-test',
      input_usd_per_million: 1,
      output_usd_per_million: 1,
    });
    const user = await t.user();
    const { response } = await client(user).chat.completions.create(ask()).withResponse();
    // 11 prompt tokens at 2.5 $/M and 7 completion tokens at 10 $/M: 97.5 micro-dollars, rounded.
    assert.equal(response.headers.get('x-gatehouse-cost-usd'), '0.000098');
    primary.next('fail_500');
    const viaBackup = await h.request({
      method: 'POST',
      url: '/api/llm/completion',
      token: user.apiKey,
      body: { prompt: 'Say hello', model: 'gpt-test' },
    });
    assert.equal(viaBackup.body.provider, 'backup');
    assert.equal(viaBackup.body.cost_usd, 0.000018, "the backup's own price: 18 tokens at 1 $/M");
    const usage = await usageOf(user);
    assert.equal(usage.totals.cost_usd, 0.000116);
    const listed = await admin('GET', '/api/admin/llm/prices');
    assert.deepEqual(
      listed.body.data.map((p: { model: string; input_usd_per_million: number }) => [p.model, p.input_usd_per_million]),
      [
        ['backup/gpt-test', 1],
        ['gpt-test', 2.5],
      ],
    );
    const negative = await admin('PUT', '/api/admin/llm/prices', {
      model: 'm',
      input_usd_per_million: -1,
      output_usd_per_million: 1,
    });
    assert.deepEqual(fieldsOf(negative), ['input_usd_per_million']);
    assert.equal((await admin('DELETE', '/api/admin/llm/prices?model=gpt-test')).status, 204);
    assert.equal((await admin('DELETE', '/api/admin/llm/prices?model=gpt-test')).status, 404);
  });

  it('OpenAI’s rate-limit headers, resets written as durations', async () => {
    const { t } = await setup();
    const user = await t.user();
    const { response } = await client(user).chat.completions.create(ask()).withResponse();
    assert.match(String(response.headers.get('x-ratelimit-reset-requests')), /^(\d+h)?(\d+m)?\d+s$/);
    assert.match(String(response.headers.get('x-ratelimit-reset-tokens')), /^(\d+h)?(\d+m)?\d+s$/);
    assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '10000');
  });
});

describe('failing providers', () => {
  it('a provider that stalls past LLM_UPSTREAM_TIMEOUT is left for the next', async () => {
    const { t } = await setup();
    const user = await t.user();
    primary.next('stall');
    const { response } = await client(user).chat.completions.create(ask()).withResponse();
    assert.equal(response.headers.get('x-gatehouse-provider'), 'backup');
  });

  it('after consecutive failures a provider is skipped (circuit open, in metrics and the list) until a trial succeeds', async () => {
    const { t, admin, providerIds } = await setup();
    const user = await t.user();
    primary.next('fail_500', 'fail_429');
    for (let i = 0; i < 2; i++) await client(user).chat.completions.create(ask());
    const calls = primary.calls.length;
    const { response } = await client(user).chat.completions.create(ask()).withResponse();
    assert.equal(response.headers.get('x-gatehouse-provider'), 'backup');
    assert.equal(primary.calls.length, calls, 'the open circuit kept the call away from primary');
    const listed = await admin('GET', `/api/admin/llm/providers/${providerIds.primary}`);
    assert.equal(listed.body.circuit_open, true);
    const metrics = (await h.request({ method: 'GET', url: '/metrics', token: 'routing-test-metrics-token-0123' }))
      .text;
    assert.match(metrics, new RegExp(`gatehouse_llm_provider_circuit_open\\{tenant="${t.id}",provider="primary"\\} 1`));
    assert.match(
      metrics,
      new RegExp(`gatehouse_llm_provider_failures_total\\{tenant="${t.id}",provider="primary",reason="status"\\} 2`),
    );

    await new Promise((resolve) => setTimeout(resolve, BREAKER_COOLDOWN_MS + 50));
    const trial = await client(user).chat.completions.create(ask()).withResponse();
    assert.equal(trial.response.headers.get('x-gatehouse-provider'), 'primary', 'the trial call went through');
    assert.equal((await admin('GET', `/api/admin/llm/providers/${providerIds.primary}`)).body.circuit_open, false);
  });

  it('every provider down: 502 naming each failure, nothing charged, the reservation released', async () => {
    const { t } = await setup();
    const user = await t.user();
    primary.next('fail_500');
    backup.next('fail_500');
    const res = await h.request({
      method: 'POST',
      url: '/api/llm/v1/chat/completions',
      token: user.apiKey,
      body: ask(),
    });
    assert.equal(res.status, 502);
    assert.match(res.body.error.message, /primary: HTTP 500; backup: HTTP 500/);
    const usage = await usageOf(user);
    assert.deepEqual([usage.tokens_used, usage.tokens_reserved, usage.totals.errors], [0, 0, 1]);
  });
});

describe('outbound address policy', () => {
  it('without an operator allowance, a provider name that resolves to loopback is refused at connect', async () => {
    const strict = await createHarness();
    try {
      const t = await strict.tenant();
      const { accessToken } = await t.admin();
      const port = new URL(primary.url).port;
      const created = await strict.request({
        method: 'POST',
        url: '/api/admin/llm/providers',
        token: accessToken,
        body: { name: 'local', base_url: `http://localhost:${port}/v1`, api_key: 'sk-x', models: ['gpt-test'] },
      });
      assert.equal(created.status, 201, 'a name is only judged by what it resolves to when called');
      const user = await t.user();
      const calls = primary.calls.length;
      const res = await strict.request({
        method: 'POST',
        url: '/api/llm/v1/chat/completions',
        token: user.apiKey,
        body: ask(),
      });
      assert.equal(res.status, 502, res.text);
      assert.match(res.body.error.message, /OUTBOUND_ALLOWED_NETWORKS/);
      assert.equal(primary.calls.length, calls, 'nothing reached the loopback server');
    } finally {
      await strict.close();
    }
  });
});

describe('response cache', () => {
  const completion = (user: TestUser, body: Record<string, unknown>) =>
    h.request({ method: 'POST', url: '/api/llm/v1/chat/completions', token: user.apiKey, body });

  it('off by default; on, a repeat of a temperature-0 request is answered from the cache and charged per the setting', async () => {
    const { t, admin } = await setup();
    assert.deepEqual((await admin('GET', '/api/admin/llm/settings')).body, {
      cache_enabled: false,
      cache_ttl_seconds: 300,
      cache_charge: 'tokens',
    });
    const user = await t.user();
    const body = ask('gpt-test', { temperature: 0 });
    const calls = primary.calls.length;
    await completion(user, body);
    const uncached = await completion(user, body);
    assert.equal(uncached.headers['x-gatehouse-cache'], undefined);
    assert.equal(primary.calls.length, calls + 2);

    const on = await admin('PATCH', '/api/admin/llm/settings', { cache_enabled: true });
    assert.equal(on.status, 200, on.text);
    const miss = await completion(user, body);
    assert.equal(miss.headers['x-gatehouse-cache'], 'miss');
    const hit = await completion(user, body);
    assert.equal(hit.headers['x-gatehouse-cache'], 'hit');
    assert.equal(hit.text, miss.text, 'the same answer, byte for byte');
    assert.equal(primary.calls.length, calls + 3, 'the hit called no provider');
    assert.equal((await usageOf(user)).tokens_used, 4 * 18, 'charge "tokens": a hit costs what the call cost');

    // Not cacheable: sampling, or a stream.
    const sampled = await completion(user, ask('gpt-test', { temperature: 0.7 }));
    assert.equal(sampled.headers['x-gatehouse-cache'], undefined);

    await admin('PATCH', '/api/admin/llm/settings', { cache_charge: 'free' });
    const free = await completion(user, body);
    assert.equal(free.headers['x-gatehouse-cache'], 'hit');
    assert.equal(free.headers['x-gatehouse-cost-usd'], '0');
    assert.equal((await usageOf(user)).tokens_used, 5 * 18, 'charge "free": the hit was not charged');

    const bad = await admin('PATCH', '/api/admin/llm/settings', { cache_ttl_seconds: 0 });
    assert.deepEqual(fieldsOf(bad), ['cache_ttl_seconds']);
  });
});
