import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hash as argon2Hash } from '@node-rs/argon2';
import { hash as bcryptHash } from '@node-rs/bcrypt';
import { createHarness, fieldsOf, type Harness } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());
describe('POST /api/auth/login', () => {
  it('200 with JSON {email, password}', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const res = await t.login({ email: user.email, password: user.password });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.user.id, user.id);
    assert.ok(res.body.access_token && res.body.refresh_token);
    assert.equal(res.body.token_type, 'bearer');
    const me = await h.request({ method: 'GET', url: '/api/auth/me', token: res.body.access_token });
    assert.equal(me.body.id, user.id);
  });

  it('200 with form-encoded username/password (seed 001)', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const res = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      form: { username: user.email, password: user.password },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.user.email, user.email);
  });

  it('400 names an unknown field, in JSON and in the form-encoded variant, before any password is checked', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const json = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      body: { email: user.email, password: user.password, remember_me: true },
    });
    assert.equal(json.status, 400, json.text);
    assert.deepEqual(fieldsOf(json), ['remember_me']);
    const form = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      form: { username: user.email, password: user.password, otp: '123456' },
    });
    assert.equal(form.status, 400, form.text);
    assert.deepEqual(fieldsOf(form), ['otp']);
    const grant = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      form: { username: user.email, password: user.password, grant_type: 'client_credentials' },
    });
    assert.deepEqual(fieldsOf(grant), ['grant_type']);
    // The rest of the OAuth2 password form (RFC 6749 §4.3.2, §2.3.1) is still accepted.
    const oauthForm = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      form: {
        grant_type: 'password',
        username: user.email,
        password: user.password,
        scope: '',
        client_id: 'cli',
        client_secret: '',
      },
    });
    assert.equal(oauthForm.status, 200, oauthForm.text);
  });

  it('401 invalid_credentials is identical for a wrong password and an unknown email', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const wrong = await t.login({ email: user.email, password: 'not the password at all' });
    const unknown = await t.login({ email: 'nobody@example.com', password: 'not the password at all' });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    assert.deepEqual({ ...wrong.body.error, requestId: 0 }, { ...unknown.body.error, requestId: 0 });
    const audit = await h.request({
      method: 'GET',
      url: '/api/admin/audit?action=login.failed',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.deepEqual(audit.body.data.map((e: { data: { reason: string } }) => e.data.reason).sort(), [
      'unknown_email',
      'wrong_password',
    ]);
  });

  it('401 for a user of another tenant (tenants are separate user pools)', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const user = await t1.user();
    const res = await t2.login({ email: user.email, password: user.password });
    assert.equal(res.status, 401);
  });

  it('429 after repeated failures from one ip, while the owner still signs in from another ip', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const attacker = '203.0.113.9';
    for (let i = 0; i < 10; i++) {
      const res = await h.request({
        method: 'POST',
        url: '/api/auth/login',
        tenant: t.publishableKey,
        ip: attacker,
        body: { email: user.email, password: `guess-${i}-guess` },
      });
      assert.equal(res.status, 401);
    }
    const blocked = await t.login({ email: user.email, password: user.password }, { ip: attacker });
    assert.equal(blocked.status, 429, 'even the right password is refused from the blocked ip');
    assert.equal(blocked.body.error.code, 'too_many_attempts');
    assert.ok(Number(blocked.headers['retry-after']) > 0);

    const owner = await t.login({ email: user.email, password: user.password }, { ip: '198.51.100.7' });
    assert.equal(owner.status, 200, owner.text);
  });

  it('429 for guesses sent in parallel beyond the limit: they are counted before the password is checked', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const guesses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        h.request({
          method: 'POST',
          url: '/api/auth/login',
          tenant: t.publishableKey,
          ip: '203.0.113.77',
          body: { email: user.email, password: `parallel guess ${i}` },
        }),
      ),
    );
    const statuses = guesses.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 401).length, 10, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, 20, statuses.join(','));
  });

  it('200 again after a burst of correct sign-ins from one ip: returned points leave no block', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const burst = await Promise.all(
      Array.from({ length: 15 }, () => t.login({ email: user.email, password: user.password }, { ip: '203.0.113.88' })),
    );
    for (const res of burst) assert.ok(res.status === 200 || res.status === 429, res.text);
    assert.ok(burst.filter((r) => r.status === 200).length >= 10);
    const after = await t.login({ email: user.email, password: user.password }, { ip: '203.0.113.88' });
    assert.equal(after.status, 200, after.text);
  });

  it('403 account_disabled only after the right password', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const patch = await h.request({
      method: 'PATCH',
      url: `/api/admin/users/${user.id}`,
      token: h.operator.token,
      tenant: t.id,
      body: { disabled: true },
    });
    assert.equal(patch.status, 200, patch.text);
    const wrong = await t.login({ email: user.email, password: 'not the password at all' });
    assert.equal(wrong.status, 401);
    const right = await t.login({ email: user.email, password: user.password });
    assert.equal(right.status, 403);
    assert.equal(right.body.error.code, 'account_disabled');
    const me = await h.request({ method: 'GET', url: '/api/auth/me', token: user.accessToken });
    assert.equal(me.status, 401, 'disabling revoked the live session');
    const byKey = await h.request({ method: 'GET', url: '/api/auth/me', token: user.apiKey });
    assert.equal(byKey.status, 401, 'and API keys stop working');
  });

  it('200 for an imported bcrypt user, whose hash is upgraded to argon2id at that login', async () => {
    const t = await h.tenant();
    const imported = await h.request({
      method: 'POST',
      url: '/api/admin/users/import',
      token: h.operator.token,
      tenant: t.id,
      body: {
        users: [{ email: 'old@example.com', password_hash: await bcryptHash('legacy password 1', 4), name: 'Old' }],
      },
    });
    assert.equal(imported.status, 201, imported.text);
    const id = imported.body.users[0].id;
    const before = await h.deps.db.kysely
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    assert.match(before.password_hash ?? '', /^\$2[ab]\$/);
    const login = await t.login({ email: 'old@example.com', password: 'legacy password 1' });
    assert.equal(login.status, 200, login.text);
    const afterRow = await h.deps.db.kysely
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    assert.match(afterRow.password_hash ?? '', /^\$argon2id\$/);
    const again = await t.login({ email: 'old@example.com', password: 'legacy password 1' });
    assert.equal(again.status, 200);
  });
});

describe('import', () => {
  it('400 names each users.N.password_hash whose cost is beyond the bounds (argon2 m, t, p, lengths; bcrypt cost); nothing is imported', async () => {
    const t = await h.tenant();
    const salt = 'c2FsdHNhbHRzYWx0c2FsdA'; // 16 bytes
    const tag = 'aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g'; // 32 bytes
    const argon2 = (params: string, s = salt, h = tag) => `$argon2id$v=19$${params}$${s}$${h}`;
    const bcrypt = (cost: string) => `$2b$${cost}$${'a'.repeat(53)}`;
    const hashes = [
      argon2('m=1048576,t=2,p=1'), // 1 GiB
      argon2('m=19456,t=4294967295,p=1'),
      argon2('m=19456,t=2,p=255'),
      argon2('m=19456,t=11,p=1'),
      argon2('m=19456,t=2,p=1', 'c2FsdA'), // 4-byte salt
      argon2('m=19456,t=2,p=1', salt, 'A'.repeat(400)), // 300-byte tag
      bcrypt('31'),
      bcrypt('15'),
      argon2('m=65536,t=10,p=4'), // the most accepted
      bcrypt('14'),
    ];
    const res = await h.request({
      method: 'POST',
      url: '/api/admin/users/import',
      token: h.operator.token,
      tenant: t.id,
      body: { users: hashes.map((password_hash, i) => ({ email: `costly${i}@example.com`, password_hash })) },
    });
    assert.equal(res.status, 400, res.text);
    assert.deepEqual(
      fieldsOf(res),
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `users.${i}.password_hash`),
    );
    assert.match(
      res.body.error.message,
      /users\.0\.password_hash has argon2 memory cost m \(KiB\) 1048576, outside 8 to 65536/,
    );
    assert.match(res.body.error.message, /users\.6\.password_hash has bcrypt cost 31, outside 4 to 14/);
    const list = await h.request({ method: 'GET', url: '/api/admin/users', token: h.operator.token, tenant: t.id });
    assert.equal(list.body.data.length, 0);
  });

  it('401 for a stored hash beyond the bounds even with the right password: it is not computed, and the audit says why', async () => {
    const t = await h.tenant();
    const user = await t.user();
    // A row from before the bounds: a real hash of the password, with one iteration too many.
    const costly = await argon2Hash(user.password, { algorithm: 2, memoryCost: 1024, timeCost: 11, parallelism: 1 });
    await h.deps.db.kysely.updateTable('users').set({ password_hash: costly }).where('id', '=', user.id).execute();
    const res = await t.login({ email: user.email, password: user.password });
    assert.equal(res.status, 401, res.text);
    assert.equal(res.body.error.code, 'invalid_credentials');
    const audit = await h.request({
      method: 'GET',
      url: '/api/admin/audit?action=login.failed',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.deepEqual(
      audit.body.data.map((e: { data: { reason: string } }) => e.data.reason),
      ['unverifiable_hash'],
    );
    assert.ok(h.logs.some((line) => line.includes('outside the accepted cost bounds') && line.includes(user.id)));
  });

  it('400 names a bad hash and 409 an existing email; nothing is imported either way', async () => {
    const t = await h.tenant();
    const existing = await t.user();
    const bad = await h.request({
      method: 'POST',
      url: '/api/admin/users/import',
      token: h.operator.token,
      tenant: t.id,
      body: { users: [{ email: 'a@example.com' }, { email: 'b@example.com', password_hash: 'md5:abc' }] },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.details.fields[0].field, 'users.1.password_hash');
    const conflict = await h.request({
      method: 'POST',
      url: '/api/admin/users/import',
      token: h.operator.token,
      tenant: t.id,
      body: { users: [{ email: 'c@example.com' }, { email: existing.email }] },
    });
    assert.equal(conflict.status, 409);
    const list = await h.request({ method: 'GET', url: '/api/admin/users', token: h.operator.token, tenant: t.id });
    assert.deepEqual(
      list.body.data.map((u: { email: string }) => u.email),
      [existing.email],
    );
  });
});
