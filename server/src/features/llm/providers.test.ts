import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, fieldsOf, type Harness, type TestTenant } from '../../../test/harness.js';
import { findProvider } from './providers.repo.js';
import { providerKey } from './providers.service.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const SHARED_KEY = 'sk-test-shared-provider-key';

async function adminOf(t: TestTenant) {
  const admin = await t.admin();
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
    h.request({ method, url, token: admin.accessToken, body });
  return { admin, call };
}

describe('LLM providers (admin)', () => {
  it('201 from a preset: base_url filled in, the key stored encrypted and never returned', async () => {
    const t = await h.tenant();
    const { call } = await adminOf(t);
    const res = await call('POST', '/api/admin/llm/providers', {
      name: 'glm',
      preset: 'glm',
      api_key: SHARED_KEY,
      models: ['glm-4', 'glm-4', 'glm-4-flash'],
    });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.base_url, 'https://open.bigmodel.cn/api/paas/v4');
    assert.deepEqual(res.body.models, ['glm-4', 'glm-4-flash']);
    assert.deepEqual([res.body.kind, res.body.priority, res.body.enabled], ['openai', 0, true]);
    assert.doesNotMatch(res.text, new RegExp(SHARED_KEY));
    const listed = await call('GET', '/api/admin/llm/providers');
    assert.doesNotMatch(listed.text, new RegExp(SHARED_KEY));
    assert.deepEqual(
      listed.body.data.map((p: { id: string }) => p.id),
      [res.body.id],
    );
    // Stored sealed; only the gateway opens it, for the outbound call.
    const row = await findProvider(h.deps.db.kysely, t.id, res.body.id);
    assert.ok(row && !row.api_key_sealed.includes(SHARED_KEY));
    assert.equal(providerKey(h.deps, row), SHARED_KEY);
  });

  it('PATCH changes fields and replaces the key; DELETE removes; audit names fields, never values', async () => {
    const t = await h.tenant();
    const { call } = await adminOf(t);
    const created = await call('POST', '/api/admin/llm/providers', {
      name: 'local',
      base_url: 'http://llm.internal.example:9999/v1/',
      api_key: SHARED_KEY,
    });
    assert.equal(created.body.base_url, 'http://llm.internal.example:9999/v1');
    assert.equal(created.body.circuit_open, false);
    const patched = await call('PATCH', `/api/admin/llm/providers/${created.body.id}`, {
      models: ['m1'],
      priority: 5,
      enabled: false,
      api_key: 'sk-new-key',
    });
    assert.equal(patched.status, 200, patched.text);
    assert.deepEqual([patched.body.models, patched.body.priority, patched.body.enabled], [['m1'], 5, false]);
    const row = await findProvider(h.deps.db.kysely, t.id, created.body.id);
    assert.equal(row && providerKey(h.deps, row), 'sk-new-key');
    const audit = await h.request({
      method: 'GET',
      url: `/api/admin/audit?target_id=${created.body.id}`,
      token: h.operator.token,
      tenant: t.id,
    });
    assert.deepEqual(
      audit.body.data.map((e: { action: string }) => e.action),
      ['llm_provider.updated', 'llm_provider.created'],
    );
    assert.doesNotMatch(audit.text, /sk-new-key/);
    assert.equal((await call('DELETE', `/api/admin/llm/providers/${created.body.id}`)).status, 204);
    assert.equal((await call('GET', `/api/admin/llm/providers/${created.body.id}`)).status, 404);
  });

  it('400 naming the field: no base_url and no preset, a bad URL, credentials in the URL, a private address, an unknown preset', async () => {
    const t = await h.tenant();
    const { call } = await adminOf(t);
    const post = (body: Record<string, unknown>) =>
      call('POST', '/api/admin/llm/providers', { name: 'p', api_key: SHARED_KEY, ...body });
    for (const body of [
      {},
      { base_url: 'not a url' },
      { base_url: 'ftp://x.example' },
      { base_url: 'https://u:p@x.example' },
      // Not public addresses, and no operator allowance here (OUTBOUND_ALLOWED_NETWORKS).
      { base_url: 'http://127.0.0.1:11434/v1' },
      { base_url: 'http://169.254.169.254/latest' },
      { base_url: 'http://[::1]:8000/v1' },
      { base_url: 'http://[::ffff:10.0.0.1]/v1' },
    ]) {
      const res = await post(body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.deepEqual(fieldsOf(res), ['base_url'], res.text);
    }
    const preset = await post({ preset: 'nope' });
    assert.equal(preset.status, 400);
    assert.ok(fieldsOf(preset).includes('preset'), preset.text);
    const noKey = await call('POST', '/api/admin/llm/providers', { name: 'p', preset: 'openai' });
    assert.deepEqual(fieldsOf(noKey), ['api_key']);
  });

  it('409 for a second provider of the same name; 403 for users and service keys', async () => {
    const t = await h.tenant();
    const { call } = await adminOf(t);
    const body = { name: 'openai', preset: 'openai', api_key: SHARED_KEY };
    assert.equal((await call('POST', '/api/admin/llm/providers', body)).status, 201);
    assert.equal((await call('POST', '/api/admin/llm/providers', body)).status, 409);
    const user = await t.user();
    const service = await t.serviceKey();
    for (const token of [user.accessToken, service]) {
      const res = await h.request({ method: 'GET', url: '/api/admin/llm/providers', token });
      assert.equal(res.status, 403);
    }
  });

  it('GET /api/admin/llm/presets lists the seeds’ providers', async () => {
    const { call } = await adminOf(await h.tenant());
    const res = await call('GET', '/api/admin/llm/presets');
    assert.deepEqual(
      res.body.data.map((p: { preset: string }) => p.preset),
      ['openai', 'openrouter', 'glm', 'glama', 'requesty', 'aimlapi'],
    );
  });
});

describe('GET /api/llm/v1/models', () => {
  it('the models of enabled providers, once each, owned by the highest-priority provider, in OpenAI’s shape', async () => {
    const t = await h.tenant();
    const { call } = await adminOf(t);
    await call('POST', '/api/admin/llm/providers', {
      name: 'backup',
      preset: 'openrouter',
      api_key: SHARED_KEY,
      models: ['gpt-4o', 'llama-3'],
      priority: 1,
    });
    await call('POST', '/api/admin/llm/providers', {
      name: 'main',
      preset: 'openai',
      api_key: SHARED_KEY,
      models: ['gpt-4o'],
      priority: 10,
    });
    await call('POST', '/api/admin/llm/providers', {
      name: 'off',
      preset: 'glama',
      api_key: SHARED_KEY,
      models: ['hidden'],
      enabled: false,
    });
    const user = await t.user();
    const res = await h.request({ method: 'GET', url: '/api/llm/v1/models', token: user.apiKey });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.object, 'list');
    assert.deepEqual(
      res.body.data.map((m: { id: string; object: string; owned_by: string }) => [m.id, m.object, m.owned_by]),
      [
        ['gpt-4o', 'model', 'main'],
        ['llama-3', 'model', 'backup'],
      ],
    );
    assert.doesNotMatch(res.text, new RegExp(SHARED_KEY));
    const other = await (await h.tenant()).user();
    const empty = await h.request({ method: 'GET', url: '/api/llm/v1/models', token: other.apiKey });
    assert.deepEqual(empty.body.data, [], 'another tenant’s providers are not offered');
  });
});
