import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createHarness, fieldsOf, type Harness } from '../../../test/harness.js';
import { keyCalls } from './api-keys.fixtures.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const { me, list, remove, verify, createKey, rotate } = keyCalls(() => h);

const DAY_MS = 86_400_000;
const WELL_FORMED_API_KEY = /^gk_[0-9A-Za-z]{38}$/;
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

function assertIsoWithin(value: string | null, from: number, to: number, what: string) {
  assert.equal(typeof value, 'string', `${what} is set`);
  const at = Date.parse(value as string);
  assert.ok(
    at >= from && at <= to,
    `${what} ${value} is within [${new Date(from).toISOString()}, ${new Date(to).toISOString()}]`,
  );
}

describe('POST /api/keys', () => {
  it('201 returns the key once and stores only its hash', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = await createKey(user.accessToken, { name: 'CI deploys', scopes: ['read', 'write:docs', 'read'] });
    assert.match(key.id, /^key_/);
    assert.equal(key.name, 'CI deploys');
    assert.deepEqual(key.scopes, ['read', 'write:docs'], 'duplicate scopes are dropped');
    assert.ok(key.key.startsWith(key.start) && key.start.length < key.key.length, 'start is a short prefix');
    assert.equal(key.expires_at, null);
    assert.equal(key.last_used_at, null);

    const listed = await list(user.accessToken);
    assert.equal(listed.status, 200);
    const entry = listed.body.data.find((k: { id: string }) => k.id === key.id);
    assert.ok(entry, 'the new key is listed');
    assert.equal(entry.key, undefined, 'the list never returns the secret');
    assert.deepEqual(entry.scopes, ['read', 'write:docs']);

    const row = await h.deps.db.kysely
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', key.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.key_hash, sha256(key.key));
    assert.equal(row.tenant_id, t.id);
    assert.equal(row.user_id, user.id);
  });

  it('201 with expires_in sets expires_at that many seconds ahead', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const from = h.clock.now();
    const key = await createKey(user.accessToken, { name: 'short', expires_in: 3600 });
    assertIsoWithin(key.expires_at, from + 3_600_000, h.clock.now() + 3_600_000, 'expires_at');
  });

  it('201 every issued key has the documented gk_ shape and authenticates at once', async () => {
    // 20 keys: a body that sometimes outgrows its fixed length (fixed in 19b3c66) shows up here.
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const broken: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { key } = await createKey(user.accessToken, { name: `k${i}` });
      const verified = await verify(service, key);
      if (!WELL_FORMED_API_KEY.test(key) || verified.body.code !== 'VALID' || (await me(key)).status !== 200)
        broken.push(key);
    }
    assert.deepEqual(broken, [], `${broken.length} of 20 freshly issued keys are malformed or rejected`);
  });

  it('400 validation_failed names the field: bad scope, expires_in too small, unknown field, missing name', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const cases: [Record<string, unknown>, string][] = [
      [{ name: 'x', scopes: ['has space'] }, 'scopes.0'],
      [{ name: 'x', scopes: ['ok', 'x'.repeat(65)] }, 'scopes.1'],
      [{ name: 'x', expires_in: 59 }, 'expires_in'],
      [{ name: 'x', owner: 'someone-else' }, 'owner'],
      [{ scopes: ['read'] }, 'name'],
      [{ name: '' }, 'name'],
    ];
    for (const [body, field] of cases) {
      const res = await h.request({ method: 'POST', url: '/api/keys', token: user.accessToken, body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error.code, 'validation_failed');
      assert.ok(fieldsOf(res).includes(field), `${field} named in ${res.text}`);
    }
    const rows = await h.deps.db.kysely.selectFrom('api_keys').select('id').where('user_id', '=', user.id).execute();
    assert.deepEqual(
      rows.map((r) => r.id),
      [user.apiKeyId],
      'nothing was written',
    );
  });

  it('401 without a credential', async () => {
    const res = await h.request({ method: 'POST', url: '/api/keys', body: { name: 'x' } });
    assert.equal(res.status, 401);
    assert.equal(res.body.error.code, 'unauthorized');
  });
});

describe('API key as bearer', () => {
  it('200 on /api/auth/me as the key owner, and the key can manage its owner’s keys', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = await createKey(user.accessToken);
    const res = await me(key.key);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.id, user.id);
    assert.equal(res.body.email, user.email);
    const listed = await list(key.key);
    assert.equal(listed.status, 200);
    assert.ok(listed.body.data.some((k: { id: string }) => k.id === key.id));
  });
});

describe('GET /api/keys', () => {
  it('200 lists only the caller’s live keys: not another user’s, not revoked, not expired', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const other = await t.user();
    const kept = await createKey(user.accessToken, { name: 'kept' });
    const revoked = await createKey(user.accessToken, { name: 'revoked' });
    const expiring = await createKey(user.accessToken, { name: 'expiring', expires_in: 60 });
    const others = await createKey(other.accessToken, { name: 'theirs' });
    assert.equal((await remove(user.accessToken, revoked.id)).status, 204);

    const ids = async () => ((await list(kept.key)).body.data as { id: string }[]).map((k) => k.id).sort();
    assert.deepEqual(await ids(), [user.apiKeyId, kept.id, expiring.id].sort());
    advance(61_000);
    assert.deepEqual(await ids(), [user.apiKeyId, kept.id].sort(), 'the expired key drops out');
    assert.ok(!(await ids()).includes(others.id));
  });

  it('200 shows last_used_at after the key is used and the buffer is flushed', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = await createKey(user.accessToken);
    const from = h.clock.now();
    assert.equal((await me(key.key)).status, 200);
    const to = h.clock.now();
    await h.deps.lastUsed.flush();
    const entry = (await list(user.accessToken)).body.data.find((k: { id: string }) => k.id === key.id);
    assertIsoWithin(entry.last_used_at, from, to, 'last_used_at');
    const primary = (await list(user.accessToken)).body.data.find((k: { id: string }) => k.id === user.apiKeyId);
    assert.equal(primary.last_used_at, null, 'an unused key has no last use');
  });

  it('401 without a credential', async () => {
    const res = await h.request({ method: 'GET', url: '/api/keys' });
    assert.equal(res.status, 401);
  });
});

describe('DELETE /api/keys/:id', () => {
  it('204 revokes at once: the key gets 401 and verifies as REVOKED, and the audit log has it', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const key = await createKey(user.accessToken);
    assert.equal((await me(key.key)).status, 200);
    const res = await remove(user.accessToken, key.id);
    assert.equal(res.status, 204);
    assert.equal(res.text, '');
    const after = await me(key.key);
    assert.equal(after.status, 401);
    assert.equal(after.body.error.code, 'invalid_token');
    const verified = await verify(service, key.key);
    assert.equal(verified.body.code, 'REVOKED');
    assert.equal(verified.body.valid, false);
    const again = await remove(user.accessToken, key.id);
    assert.equal(again.status, 404, 'a revoked key is gone');
    const audit = await h.request({
      method: 'GET',
      url: `/api/admin/audit?action=api_key.revoked&target_id=${key.id}`,
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(audit.body.data.length, 1);
    assert.equal(audit.body.data[0].actor.id, user.id);
  });

  it('404 for another user’s key and for another tenant’s key; both keep working', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const owner = await t1.user();
    const sameTenant = await t1.user();
    const otherTenant = await t2.user();
    const key = await createKey(owner.accessToken);
    for (const intruder of [sameTenant, otherTenant]) {
      const res = await remove(intruder.accessToken, key.id);
      assert.equal(res.status, 404, res.text);
      assert.equal(res.body.error.code, 'not_found');
    }
    assert.equal((await me(key.key)).status, 200, 'the key still works');
  });
});

describe('POST /api/keys/:id/rotate', () => {
  it('201 issues a new secret with the same name, scopes and expiry; the old key works until the default 24h overlap ends', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    const from = h.clock.now();
    const old = await createKey(user.accessToken, {
      name: 'deploy bot',
      scopes: ['deploy', 'read'],
      expires_in: 30 * 86_400,
    });
    const fresh = await rotate(user.accessToken, old.id);
    const to = h.clock.now();
    assert.notEqual(fresh.id, old.id);
    assert.notEqual(fresh.key, old.key);
    assert.equal(fresh.name, 'deploy bot');
    assert.deepEqual(fresh.scopes, ['deploy', 'read']);
    assert.equal(fresh.expires_at, old.expires_at, 'the new key keeps the original expiry');
    assertIsoWithin(fresh.previous_key_expires_at, from + DAY_MS, to + DAY_MS, 'previous_key_expires_at');

    assert.equal((await me(old.key)).status, 200, 'the old key works during the overlap');
    assert.equal((await me(fresh.key)).status, 200);
    advance(DAY_MS - 60_000);
    assert.equal((await me(old.key)).status, 200, 'still a minute before the overlap ends');
    advance(2 * 60_000);
    assert.equal((await me(old.key)).status, 401, 'the old key stops after the overlap');
    assert.equal((await verify(service, old.key)).body.code, 'EXPIRED');
    assert.equal((await me(fresh.key)).status, 200, 'the new key carries on');
    assert.equal((await verify(service, fresh.key)).body.code, 'VALID');
  });

  it('201 with overlap_seconds ends the old key after that many seconds', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t = await h.tenant();
    const user = await t.user();
    const old = await createKey(user.accessToken);
    const fresh = await rotate(user.accessToken, old.id, { overlap_seconds: 120 });
    assert.equal(fresh.expires_at, null, 'a key without expiry stays without one');
    advance(110_000);
    assert.equal((await me(old.key)).status, 200);
    advance(20_000);
    assert.equal((await me(old.key)).status, 401);
    assert.equal((await me(fresh.key)).status, 200);
  });

  it('201 with overlap_seconds 0 stops the old key at once', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const old = await createKey(user.accessToken);
    const fresh = await rotate(user.accessToken, old.id, { overlap_seconds: 0 });
    assert.equal((await me(old.key)).status, 401);
    assert.equal((await me(fresh.key)).status, 200);
  });

  it('201 once for concurrent rotations of one key; the others 409 and leave no extra successor', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const old = await createKey(user.accessToken, { name: 'raced' });
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        h.request({ method: 'POST', url: `/api/keys/${old.id}/rotate`, token: user.accessToken, body: {} }),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.status).sort(),
      [201, 409, 409, 409, 409, 409],
      results.map((r) => r.text).join('\n'),
    );
    const named = (await list(user.accessToken)).body.data.filter((k: { name: string }) => k.name === 'raced');
    assert.equal(named.length, 2, 'the old key (in its overlap) and exactly one successor');
  });

  it('409 rotating an already rotated key names its successor, which keeps the original expiry', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const old = await createKey(user.accessToken, { name: 'never expires' });
    const fresh = await rotate(user.accessToken, old.id);
    const second = await h.request({ method: 'POST', url: `/api/keys/${old.id}/rotate`, token: user.accessToken });
    assert.equal(second.status, 409, second.text);
    assert.equal(second.body.error.code, 'conflict');
    assert.equal(second.body.error.details.successor_id, fresh.id);
    const again = await rotate(user.accessToken, fresh.id);
    assert.equal(
      again.expires_at,
      null,
      'the original key had no expiry, so neither has the successor of its successor',
    );
  });

  it('404 for another user’s key and another tenant’s key, and for an expired key', async (ctx) => {
    const advance = h.clockFor(ctx);
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const owner = await t1.user();
    const key = await createKey(owner.accessToken, { name: 'k', expires_in: 60 });
    for (const intruder of [await t1.user(), await t2.user()]) {
      const res = await h.request({ method: 'POST', url: `/api/keys/${key.id}/rotate`, token: intruder.accessToken });
      assert.equal(res.status, 404, res.text);
    }
    assert.equal((await me(key.key)).status, 200, 'the key was not touched');
    advance(61_000);
    const res = await h.request({ method: 'POST', url: `/api/keys/${key.id}/rotate`, token: owner.accessToken });
    assert.equal(res.status, 404, 'an expired key cannot be rotated back to life');
  });

  it('400 names overlap_seconds when negative and an unknown field', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const key = await createKey(user.accessToken);
    for (const [body, field] of [
      [{ overlap_seconds: -1 }, 'overlap_seconds'],
      [{ overlap_seconds: 31 * 86_400 }, 'overlap_seconds'],
      [{ keep_old: true }, 'keep_old'],
    ] as const) {
      const res = await h.request({
        method: 'POST',
        url: `/api/keys/${key.id}/rotate`,
        token: user.accessToken,
        body,
      });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.ok(fieldsOf(res).includes(field), res.text);
    }
    assert.equal((await me(key.key)).status, 200, 'a refused rotation leaves the key alone');
  });
});

describe('storage', () => {
  it('the database never holds a plaintext key, created or rotated', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const created = await createKey(user.accessToken, { name: 'k', scopes: ['read'] });
    const old = await createKey(user.accessToken, { name: 'r' });
    const fresh = await rotate(user.accessToken, old.id);
    const secrets = [user.apiKey, created.key, old.key, fresh.key];
    const keyRows = await h.deps.db.kysely.selectFrom('api_keys').selectAll().where('tenant_id', '=', t.id).execute();
    assert.ok(keyRows.length >= 4);
    const auditRows = await h.deps.db.kysely
      .selectFrom('audit_events')
      .selectAll()
      .where('tenant_id', '=', t.id)
      .execute();
    const dump = JSON.stringify([keyRows, auditRows]);
    for (const secret of secrets) {
      assert.ok(!dump.includes(secret), 'plaintext key found in the database');
      // The non-secret part beyond `start` must not be stored either (a 20-character window).
      assert.ok(!dump.includes(secret.slice(10, 30)), 'a large piece of a key found in the database');
    }
    for (const row of keyRows) assert.match(row.key_hash, /^[0-9a-f]{64}$/);
  });
});
