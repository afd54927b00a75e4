import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { createHarness, type Harness } from './harness.js';

/**
 * DESIGN security rules: no usable secret in any table, none in the logs. Issues every kind of
 * secret through the API, then searches a dump of every table and every log line for them.
 */
let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

async function dumpDatabase(): Promise<string> {
  const tables = [
    'tenants',
    'users',
    'sessions',
    'refresh_tokens',
    'api_keys',
    'service_keys',
    'signing_keys',
    'audit_events',
    'instance_state',
    'plans',
    'token_budgets',
    'token_reservations',
    'usage_events',
    'usage_rollups',
    'events',
    'llm_providers',
    'llm_routes',
    'llm_prices',
    'llm_settings',
    'vault_keys',
    'connections',
  ];
  const parts: string[] = [];
  for (const table of tables) {
    const rows = await sql`select * from ${sql.table(table)}`.execute(h.deps.db.kysely);
    parts.push(JSON.stringify(rows.rows));
  }
  return parts.join('\n');
}

describe('secrets at rest and in logs', () => {
  it('no issued secret or password appears in a database dump or in the logs', async () => {
    const t = await h.tenant();
    const password = 'a very particular passphrase 42';
    const user = await t.user({ password });
    const login = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      form: { username: user.email, password },
    });
    const refreshed = await h.request({
      method: 'POST',
      url: '/api/auth/refresh',
      body: { refresh_token: login.body.refresh_token },
    });
    const created = await h.request({
      method: 'POST',
      url: '/api/keys',
      token: user.accessToken,
      body: { name: 'ci' },
    });
    const rotated = await h.request({
      method: 'POST',
      url: `/api/keys/${created.body.id}/rotate`,
      token: user.apiKey,
      body: {},
    });
    const serviceKey = await t.serviceKey();
    await h.request({ method: 'POST', url: '/api/keys/verify', token: serviceKey, body: { key: rotated.body.key } });
    await h.request({ method: 'GET', url: '/api/auth/me', token: refreshed.body.access_token });
    await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      body: { email: user.email, password: `${password}!` },
    });

    const providerKey = 'sk-provider-shared-secret-0001';
    const rotatedProviderKey = 'sk-provider-shared-secret-0002';
    const provider = await h.request({
      method: 'POST',
      url: '/api/admin/llm/providers',
      token: h.operator.token,
      tenant: t.id,
      body: { name: 'openai', preset: 'openai', api_key: providerKey, models: ['gpt-4o'] },
    });
    assert.equal(provider.status, 201, provider.text);
    await h.request({
      method: 'PATCH',
      url: `/api/admin/llm/providers/${provider.body.id}`,
      token: h.operator.token,
      tenant: t.id,
      body: { api_key: rotatedProviderKey },
    });

    const vaultToken = 'ya29.vault-access-token-never-in-plaintext';
    const saved = await h.request({
      method: 'PUT',
      url: '/api/vault/connections/gmail?user_id=user123',
      token: serviceKey,
      body: { auth_data: { access_token: vaultToken, refresh_token: `${vaultToken}-refresh` } },
    });
    assert.equal(saved.status, 201, saved.text);

    const secrets = {
      vaultToken,
      password,
      providerKey,
      rotatedProviderKey,
      wrongPassword: `${password}!`,
      registerRefresh: user.refreshToken,
      registerApiKey: user.apiKey,
      loginAccess: login.body.access_token,
      loginRefresh: login.body.refresh_token,
      refreshedAccess: refreshed.body.access_token,
      refreshedRefresh: refreshed.body.refresh_token,
      createdKey: created.body.key,
      rotatedKey: rotated.body.key,
      serviceKey,
      operatorToken: h.operator.token,
    };
    for (const [name, value] of Object.entries(secrets))
      assert.ok(typeof value === 'string' && value.length > 10, name);

    const dump = await dumpDatabase();
    const logs = h.logs.join('');
    assert.ok(logs.includes('request completed'), 'request logging is on, so the check means something');
    for (const [name, value] of Object.entries(secrets)) {
      assert.ok(!dump.includes(value), `${name} found in the database`);
      assert.ok(!logs.includes(value), `${name} found in the logs`);
    }
  });

  it('the logger redacts secrets that code passes to it by name', async () => {
    h.deps.log.info({ password: 'hunter2-hunter2', body: { refresh_token: 'grt_leak', api_key: 'gk_leak' } }, 'probe');
    const line = h.logs.find((l) => l.includes('"probe"')) ?? '';
    assert.ok(line.includes('[redacted]'));
    for (const leak of ['hunter2-hunter2', 'grt_leak', 'gk_leak']) assert.ok(!line.includes(leak), leak);
  });
});
