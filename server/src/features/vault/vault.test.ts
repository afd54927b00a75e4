import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, fieldsOf, type Harness, type TestTenant } from '../../../test/harness.js';
import { rotateVault } from './vault.service.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

type Method = 'GET' | 'PUT' | 'DELETE';
const vault = (token: string) => (method: Method, path: string, body?: Record<string, unknown>) =>
  h.request({ method, url: `/api/vault/connections${path}`, token, body });

const oauth = {
  access_token: 'ya29.a0-access',
  refresh_token: '1//04-refresh',
  expires_in: 3600,
  token_type: 'Bearer',
};

describe('vault: a user’s own connections', () => {
  it('saveAuth stores any JSON, getAuth returns it as saved, a second save replaces it; expires_in sets expires_at', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const call = vault(user.accessToken);
    const saved = await call('PUT', '/gmail', { auth_data: oauth });
    assert.equal(saved.status, 201, saved.text);
    assert.equal(saved.body.user_id, user.id);
    assert.equal(saved.body.auth_data, undefined, 'the data is not echoed');
    const expiresAt = Date.parse(saved.body.expires_at);
    assert.ok(Math.abs(expiresAt - (Date.now() + 3_600_000)) < 10_000, saved.body.expires_at);

    const got = await call('GET', '/gmail');
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(got.body.auth_data, oauth);

    for (const data of ['a bare string key', [1, 'two', { three: 3 }], { nested: { deep: [true, null] } }, 42]) {
      const replaced = await call('PUT', '/custom-service', {
        auth_data: data,
        expires_at: '2030-01-01T00:00:00.000Z',
      });
      assert.ok([200, 201].includes(replaced.status), replaced.text);
      const read = await call('GET', '/custom-service');
      assert.deepEqual(read.body.auth_data, data);
      assert.equal(read.body.expires_at, '2030-01-01T00:00:00.000Z');
    }
    const again = await call('PUT', '/gmail', { auth_data: { key: 'sk-1' }, expires_at: null });
    assert.equal(again.status, 200, 'replaced, not created');
    assert.equal(again.body.expires_at, null);

    const list = await call('GET', '');
    assert.deepEqual(
      list.body.data.map((c: { service: string }) => c.service),
      ['custom-service', 'gmail'],
    );
    assert.doesNotMatch(list.text, /sk-1|auth_data/, 'a list never carries auth data');

    assert.equal((await call('DELETE', '/gmail')).status, 204);
    assert.equal((await call('GET', '/gmail')).status, 404);
    assert.equal((await call('DELETE', '/gmail')).status, 404);
  });

  it('one user never reaches another’s: 404 in their own space, 403 naming another user', async () => {
    const t = await h.tenant();
    const [alice, bob] = [await t.user(), await t.user()];
    await vault(alice.apiKey)('PUT', '/github', { auth_data: { token: 'ghp_alice' } });
    assert.equal((await vault(bob.apiKey)('GET', '/github')).status, 404);
    const named = await vault(bob.apiKey)('GET', `/github?user_id=${alice.id}`);
    assert.equal(named.status, 403);
    assert.doesNotMatch(named.text, /ghp_alice/);
  });

  it('400 naming the field: a bad service name, no auth_data, too much data, a bad expires_at', async () => {
    const t = await h.tenant();
    const call = vault((await t.user()).accessToken);
    const cases: [string, Record<string, unknown>, string][] = [
      ['/Gmail', { auth_data: {} }, 'service'],
      ['/gmail', {}, 'auth_data'],
      ['/gmail', { auth_data: null }, 'auth_data'],
      ['/gmail', { auth_data: { blob: 'x'.repeat(70_000) } }, 'auth_data'],
      ['/gmail', { auth_data: {}, expires_at: 'tomorrow' }, 'expires_at'],
    ];
    for (const [path, body, field] of cases) {
      const res = await call('PUT', path, body);
      assert.equal(res.status, 400, `${path} ${JSON.stringify(body).slice(0, 60)}: ${res.text}`);
      assert.ok(fieldsOf(res).includes(field), res.text);
    }
  });
});

describe('vault: an app backend with a service key', () => {
  it('names users by its own id (seed 004’s user123) or by Gatehouse id; the user sees the same connection', async () => {
    const t = await h.tenant();
    const call = vault(await t.serviceKey());
    const saved = await call('PUT', '/openai?user_id=user123', { auth_data: { key: 'sk-user123' } });
    assert.equal(saved.status, 201, saved.text);
    assert.equal(saved.body.user_id, 'user123');
    assert.deepEqual((await call('GET', '/openai?user_id=user123')).body.auth_data, { key: 'sk-user123' });

    const user = await t.user();
    await call('PUT', `/gmail?user_id=${user.id}`, { auth_data: oauth });
    assert.deepEqual((await vault(user.accessToken)('GET', '/gmail')).body.auth_data, oauth);

    const all = await call('GET', '');
    assert.deepEqual(all.body.data.map((c: { user_id: string }) => c.user_id).sort(), [user.id, 'user123'].sort());
    const one = await call('GET', '?user_id=user123');
    assert.deepEqual(
      one.body.data.map((c: { service: string }) => c.service),
      ['openai'],
    );

    const missing = await call('GET', '/openai');
    assert.equal(missing.status, 400);
    assert.deepEqual(fieldsOf(missing), ['user_id']);
    assert.equal((await call('GET', '/gmail?user_id=usr_00000000000000000000000000')).status, 404);
  });

  it('another tenant’s service key finds nothing of this tenant’s', async () => {
    const [a, b] = [await h.tenant(), await h.tenant()];
    await vault(await a.serviceKey())('PUT', '/slack?user_id=user123', { auth_data: { token: 'xoxb-a' } });
    const other = await vault(await b.serviceKey())('GET', '/slack?user_id=user123');
    assert.equal(other.status, 404);
  });
});

describe('vault: encryption at rest', () => {
  const saveFor = async (t: TestTenant, owner: string, service: string, data: unknown) => {
    const res = await vault(await t.serviceKey())('PUT', `/${service}?user_id=${owner}`, { auth_data: data });
    assert.ok([200, 201].includes(res.status), res.text);
  };
  const rowOf = (tenantId: string, owner: string, service: string) =>
    h.deps.db.kysely
      .selectFrom('connections')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('owner', '=', owner)
      .where('service', '=', service)
      .executeTakeFirstOrThrow();

  it('stored only as ciphertext; tampered or moved ciphertext fails loudly (500 integrity_failure), never garbage', async () => {
    const t = await h.tenant();
    await saveFor(t, 'alice', 'gmail', { access_token: 'plain-alice-token' });
    await saveFor(t, 'bob', 'gmail', { access_token: 'plain-bob-token' });
    const alice = await rowOf(t.id, 'alice', 'gmail');
    const keys = await h.deps.db.kysely.selectFrom('vault_keys').selectAll().where('tenant_id', '=', t.id).execute();
    assert.doesNotMatch(JSON.stringify([alice, keys]), /plain-alice-token/);
    assert.equal(keys.length, 1);

    const flip = (text: string) => {
      const i = text.length - 5;
      return text.slice(0, i) + (text[i] === 'A' ? 'B' : 'A') + text.slice(i + 1);
    };
    await h.deps.db.kysely
      .updateTable('connections')
      .set({ auth_data_sealed: flip(alice.auth_data_sealed) })
      .where('id', '=', alice.id)
      .execute();
    const service = vault(await t.serviceKey());
    const tampered = await service('GET', '/gmail?user_id=alice');
    assert.equal(tampered.status, 500);
    assert.equal(tampered.body.error.code, 'integrity_failure');
    assert.ok(h.logs.join('').includes('failed its integrity check'));

    // Bob's ciphertext copied onto Alice's row: bound to Bob, so it does not open as Alice's.
    const bob = await rowOf(t.id, 'bob', 'gmail');
    await h.deps.db.kysely
      .updateTable('connections')
      .set({ auth_data_sealed: bob.auth_data_sealed })
      .where('id', '=', alice.id)
      .execute();
    const moved = await service('GET', '/gmail?user_id=alice');
    assert.equal(moved.status, 500);
    assert.doesNotMatch(moved.text, /plain-bob-token/);
  });

  it('rotate-vault gives each tenant a new data key and re-encrypts every connection; all stay readable, new writes use it', async () => {
    const [a, b] = [await h.tenant(), await h.tenant()];
    const saved: [TestTenant, string, string, unknown][] = [
      [a, 'u1', 'gmail', { access_token: 'a-u1' }],
      [a, 'u2', 'github', ['ghp', 2]],
      [b, 'u1', 'gmail', 'b-u1-key'],
    ];
    for (const [t, owner, service, data] of saved) await saveFor(t, owner, service, data);
    const before = await rowOf(a.id, 'u1', 'gmail');
    assert.equal(before.key_version, 1);

    const ticks: number[] = [];
    let total = 0;
    const result = await rotateVault(h.deps, {
      start: (n) => {
        total = n;
      },
      tick: () => ticks.push(1),
    });
    assert.ok(result.reencrypted >= 3, JSON.stringify(result));
    // The connection tampered with in the test above (same database) is named, not fatal.
    assert.ok(result.failed.length <= 1, JSON.stringify(result));
    assert.ok(total >= 3 && ticks.length >= 3);

    for (const [t, owner, service, data] of saved) {
      const row = await rowOf(t.id, owner, service);
      assert.equal(row.key_version, 2, `${owner}/${service} re-encrypted`);
      const got = await vault(await t.serviceKey())('GET', `/${service}?user_id=${owner}`);
      assert.deepEqual(got.body.auth_data, data);
    }
    assert.notEqual((await rowOf(a.id, 'u1', 'gmail')).auth_data_sealed, before.auth_data_sealed);
    await saveFor(a, 'u3', 'notion', { token: 'secret_n' });
    assert.equal((await rowOf(a.id, 'u3', 'notion')).key_version, 2, 'new writes use the newest key');
  });
});
