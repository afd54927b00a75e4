import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, type TestResponse } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const WELL_FORMED_SERVICE_KEY = /^gsk_[0-9A-Za-z]{38}$/;
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

interface Caller {
  token: string;
  /** x-gatehouse-tenant: only operators name the tenant they act on. */
  tenant?: string;
}

const create = (caller: Caller, body: unknown = { name: 'backend' }) =>
  h.request({ method: 'POST', url: '/api/admin/service-keys', token: caller.token, tenant: caller.tenant, body });
const list = (caller: Caller) =>
  h.request({ method: 'GET', url: '/api/admin/service-keys', token: caller.token, tenant: caller.tenant });
const revoke = (caller: Caller, id: string) =>
  h.request({ method: 'DELETE', url: `/api/admin/service-keys/${id}`, token: caller.token, tenant: caller.tenant });
/** What an app backend does with its service key: check a user's API key. */
const verify = (serviceKey: string, key: string) =>
  h.request({ method: 'POST', url: '/api/keys/verify', token: serviceKey, body: { key } });

function created(res: TestResponse) {
  assert.equal(res.status, 201, res.text);
  return res.body as { id: string; name: string; start: string; key: string; created_at: string };
}

describe('POST /api/admin/service-keys', () => {
  it('201 returns the gsk_ secret once and stores only its hash', async () => {
    const t = await h.tenant();
    const operator = { token: h.operator.token, tenant: t.id };
    const from = Date.now();
    const key = created(await create(operator, { name: 'billing backend' }));
    assert.match(key.id, /^svc_/);
    assert.match(key.key, WELL_FORMED_SERVICE_KEY);
    assert.equal(key.name, 'billing backend');
    assert.ok(key.key.startsWith(key.start) && key.start.length < key.key.length, 'start is a short prefix');
    assert.ok(Date.parse(key.created_at) >= from - 1000);

    const row = await h.deps.db.kysely
      .selectFrom('service_keys')
      .selectAll()
      .where('id', '=', key.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.tenant_id, t.id);
    assert.equal(row.key_hash, sha256(key.key));
    assert.ok(!JSON.stringify(row).includes(key.key), 'no plaintext in the row');

    const audit = await h.request({
      method: 'GET',
      url: `/api/admin/audit?action=service_key.created&target_id=${key.id}`,
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(audit.body.data.length, 1);
    assert.ok(!JSON.stringify(audit.body).includes(key.key), 'no plaintext in the audit log');
  });

  it('201 the key works at once for its tenant: it verifies that tenant’s API keys', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = created(await create({ token: h.operator.token, tenant: t.id }));
    const res = await verify(key.key, user.apiKey);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.code, 'VALID');
    assert.equal(res.body.user_id, user.id);
  });

  it('400 names a missing name and an unknown field', async () => {
    const t = await h.tenant();
    const operator = { token: h.operator.token, tenant: t.id };
    for (const [body, field] of [
      [{}, 'name'],
      [{ name: '' }, 'name'],
      [{ name: 'x', scopes: ['all'] }, 'scopes'],
    ] as const) {
      const res = await create(operator, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error.code, 'validation_failed');
      assert.ok(
        res.body.error.details.fields.some((f: { field: string }) => f.field === field),
        `${field} named in ${res.text}`,
      );
    }
    assert.deepEqual((await list(operator)).body.data, [], 'nothing was created');
  });

  it('403 for a service key: service keys cannot mint service keys', async () => {
    const t = await h.tenant();
    const service = await t.serviceKey();
    const res = await create({ token: service });
    assert.equal(res.status, 403, res.text);
    assert.equal(res.body.error.code, 'forbidden');
    assert.equal((await list({ token: h.operator.token, tenant: t.id })).body.data.length, 1, 'still one key');
  });
});

describe('GET /api/admin/service-keys', () => {
  it('200 lists the tenant’s live keys without secrets, and not other tenants’ keys', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const one = created(await create({ token: h.operator.token, tenant: t1.id }, { name: 'one' }));
    const two = created(await create({ token: h.operator.token, tenant: t1.id }, { name: 'two' }));
    const theirs = created(await create({ token: h.operator.token, tenant: t2.id }, { name: 'theirs' }));
    const res = await list({ token: h.operator.token, tenant: t1.id });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.data.map((k: { id: string }) => k.id).sort(), [one.id, two.id].sort());
    for (const entry of res.body.data) {
      assert.equal(entry.key, undefined, 'the list never returns the secret');
      assert.ok(
        !JSON.stringify(entry).includes(one.key.slice(10)) && !JSON.stringify(entry).includes(two.key.slice(10)),
      );
    }
    assert.ok(!res.text.includes(theirs.id));
  });

  it('200 shows last_used_at after the key is used and the buffer is flushed', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const operator = { token: h.operator.token, tenant: t.id };
    const key = created(await create(operator));
    const listed = async () => (await list(operator)).body.data.find((k: { id: string }) => k.id === key.id);
    assert.equal((await listed()).last_used_at, null);
    const from = h.clock.now();
    assert.equal((await verify(key.key, user.apiKey)).status, 200);
    const to = h.clock.now();
    await h.deps.lastUsed.flush();
    const usedAt = Date.parse((await listed()).last_used_at);
    assert.ok(usedAt >= from && usedAt <= to, `last_used_at ${new Date(usedAt).toISOString()}`);
  });
});

describe('DELETE /api/admin/service-keys/:id', () => {
  it('204 revokes: the key then gets 401 on /api/keys/verify and leaves the list', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const operator = { token: h.operator.token, tenant: t.id };
    const key = created(await create(operator));
    assert.equal((await verify(key.key, user.apiKey)).status, 200);
    const res = await revoke(operator, key.id);
    assert.equal(res.status, 204, res.text);
    const after = await verify(key.key, user.apiKey);
    assert.equal(after.status, 401);
    assert.equal(after.body.error.code, 'invalid_token');
    assert.deepEqual((await list(operator)).body.data, []);
    const again = await revoke(operator, key.id);
    assert.equal(again.status, 404, 'a revoked key is gone');
    const audit = await h.request({
      method: 'GET',
      url: `/api/admin/audit?action=service_key.revoked&target_id=${key.id}`,
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(audit.body.data.length, 1);
  });

  it('404 for another tenant’s service key id, which keeps working', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const user = await t1.user();
    const key = created(await create({ token: h.operator.token, tenant: t1.id }));
    const viaOperator = await revoke({ token: h.operator.token, tenant: t2.id }, key.id);
    assert.equal(viaOperator.status, 404, viaOperator.text);
    assert.equal(viaOperator.body.error.code, 'not_found');
    const admin2 = await t2.admin();
    const viaAdmin = await revoke({ token: admin2.accessToken }, key.id);
    assert.equal(viaAdmin.status, 404, viaAdmin.text);
    const viaAdminNamingT1 = await revoke({ token: admin2.accessToken, tenant: t1.id }, key.id);
    assert.equal(viaAdminNamingT1.status, 404, 'a tenant admin cannot pick another tenant with the header');
    assert.equal((await verify(key.key, user.apiKey)).body.code, 'VALID', 'the key still works');
  });
});

describe('tenant admins', () => {
  it('manage their own tenant’s keys without naming it; the header cannot point them elsewhere', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const admin = await t1.admin();
    const user = await t1.user();
    const otherUser = await t2.user();
    // Naming t2 in the header is ignored for a tenant admin: the key belongs to the admin's tenant.
    const key = created(await create({ token: admin.accessToken, tenant: t2.id }, { name: 'own' }));
    const row = await h.deps.db.kysely
      .selectFrom('service_keys')
      .select('tenant_id')
      .where('id', '=', key.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.tenant_id, t1.id);
    assert.equal((await verify(key.key, user.apiKey)).body.code, 'VALID');
    assert.equal((await verify(key.key, otherUser.apiKey)).body.code, 'NOT_FOUND', 'scoped to its tenant');

    const listed = await list({ token: admin.accessToken });
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.body.data.map((k: { id: string }) => k.id),
      [key.id],
    );
    assert.deepEqual((await list({ token: h.operator.token, tenant: t2.id })).body.data, [], 't2 got nothing');
    assert.equal((await revoke({ token: admin.accessToken }, key.id)).status, 204);
    assert.equal((await verify(key.key, user.apiKey)).status, 401);
  });

  it('403 for a plain user on list, create and revoke, with a token or an API key', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = created(await create({ token: h.operator.token, tenant: t.id }));
    for (const token of [user.accessToken, user.apiKey]) {
      for (const res of [await list({ token }), await create({ token }), await revoke({ token }, key.id)]) {
        assert.equal(res.status, 403, res.text);
        assert.equal(res.body.error.code, 'forbidden');
      }
    }
    const live = await list({ token: h.operator.token, tenant: t.id });
    assert.deepEqual(
      live.body.data.map((k: { id: string }) => k.id),
      [key.id],
      'nothing changed',
    );
  });

  it('401 without a credential', async () => {
    for (const res of [await list({ token: '' }), await create({ token: '' }), await revoke({ token: '' }, 'svc_x')]) {
      assert.equal(res.status, 401);
      assert.equal(res.body.error.code, 'unauthorized');
    }
  });
});
