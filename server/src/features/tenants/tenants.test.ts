import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { createHarness, type Harness, STRONG_PASSWORD, type TestResponse } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const DEFAULT_SETTINGS = {
  access_token_ttl_seconds: 900,
  refresh_token_idle_ttl_seconds: 7 * 86_400,
  refresh_token_absolute_ttl_seconds: 30 * 86_400,
  allowed_origins: [],
  allowed_redirect_uris: [],
  password_policy: { min_length: 8, max_length: 128, block_common: true },
};

const unique = () => randomBytes(4).toString('hex');
const createTenant = (body: Record<string, unknown>, token = h.operator.token) =>
  h.request({ method: 'POST', url: '/api/admin/tenants', token, body });
const getTenant = (id: string, token = h.operator.token) =>
  h.request({ method: 'GET', url: `/api/admin/tenants/${id}`, token });
const patchTenant = (id: string, body: Record<string, unknown>, token = h.operator.token) =>
  h.request({ method: 'PATCH', url: `/api/admin/tenants/${id}`, token, body });

function assertNamesField(res: TestResponse, field: string) {
  assert.equal(res.status, 400, res.text);
  assert.equal(res.body.error.code, 'validation_failed');
  const fields = res.body.error.details.fields.map((f: { field: string }) => f.field);
  assert.ok(fields.includes(field), `${field} named in ${res.text}`);
}

describe('POST /api/admin/tenants', () => {
  it('201 creates a tenant with a publishable key and the instance defaults, and audits it', async () => {
    const slug = `acme-${unique()}`;
    const res = await createTenant({ name: 'Acme', slug });
    assert.equal(res.status, 201, res.text);
    assert.match(res.body.id, /^ten_/);
    assert.equal(res.body.slug, slug);
    assert.equal(res.body.name, 'Acme');
    assert.match(res.body.publishable_key, /^pk_/);
    assert.deepEqual(res.body.settings, DEFAULT_SETTINGS);
    const audit = await h.request({
      method: 'GET',
      url: '/api/admin/audit?action=tenant.created',
      token: h.operator.token,
      tenant: res.body.id,
    });
    assert.equal(audit.body.data.length, 1);
    assert.equal(audit.body.data[0].target.id, res.body.id);
  });

  it('201 derives the slug from the name and keeps the given settings', async () => {
    const tag = unique();
    const res = await createTenant({
      name: `Acme  Corp. ${tag}!`,
      settings: { access_token_ttl_seconds: 600, allowed_origins: ['https://app.example.com'] },
    });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.slug, `acme-corp-${tag}`);
    assert.equal(res.body.settings.access_token_ttl_seconds, 600);
    assert.deepEqual(res.body.settings.allowed_origins, ['https://app.example.com']);
    assert.equal(res.body.settings.refresh_token_idle_ttl_seconds, DEFAULT_SETTINGS.refresh_token_idle_ttl_seconds);
  });

  it('201 a slug derived from an accented name drops the accents (Über München → uber-munchen)', async () => {
    const tag = unique();
    const res = await createTenant({ name: `Über München ${tag}` });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.slug, `uber-munchen-${tag}`);
  });

  it('409 conflict for a duplicate slug', async () => {
    const slug = `dup-${unique()}`;
    assert.equal((await createTenant({ name: 'First', slug })).status, 201);
    const res = await createTenant({ name: 'Second', slug });
    assert.equal(res.status, 409, res.text);
    assert.equal(res.body.error.code, 'conflict');
  });

  it('400 names the field: access_token_ttl_seconds above the 24h maximum, idle above absolute, unknown setting, bad slug', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ settings: { access_token_ttl_seconds: 86_401 } }, 'settings.access_token_ttl_seconds'],
      [
        { settings: { refresh_token_idle_ttl_seconds: 7200, refresh_token_absolute_ttl_seconds: 3600 } },
        'settings.refresh_token_idle_ttl_seconds',
      ],
      [{ settings: { refresh_token_idle_ttl_seconds: 31 * 86_400 } }, 'settings.refresh_token_idle_ttl_seconds'],
      [{ settings: { session_color: 'blue' } }, 'settings.session_color'],
      [{ settings: { allowed_origins: ['https://app.example.com/path'] } }, 'settings.allowed_origins.0'],
      [{ slug: 'Not A Slug' }, 'slug'],
      [{ owner: 'me' }, 'owner'],
    ];
    for (const [extra, field] of cases) {
      const slug = `bad-${unique()}`;
      const res = await createTenant({ name: 'Bad', slug, ...extra });
      assertNamesField(res, field);
      const stored = await h.deps.db.kysely.selectFrom('tenants').select('id').where('slug', '=', slug).execute();
      assert.equal(stored.length, 0, 'nothing was created');
    }
    assert.equal((await createTenant({ name: 'Max', settings: { access_token_ttl_seconds: 86_400 } })).status, 201);
  });
});

describe('GET /api/admin/tenants', () => {
  it('200 pages through every tenant with next_cursor', async () => {
    const a = await h.tenant();
    const b = await h.tenant();
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: TestResponse = await h.request({
        method: 'GET',
        url: `/api/admin/tenants?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        token: h.operator.token,
      });
      assert.equal(res.status, 200, res.text);
      assert.ok(res.body.data.length <= 2);
      seen.push(...res.body.data.map((t: { id: string }) => t.id));
      cursor = res.body.next_cursor;
      pages++;
    } while (cursor && pages < 100);
    assert.ok(pages > 1, 'more than one page');
    assert.ok(seen.includes(a.id) && seen.includes(b.id));
    assert.equal(new Set(seen).size, seen.length, 'no tenant twice');
  });

  it('403 for a tenant admin and a plain user', async () => {
    const t = await h.tenant();
    for (const token of [(await t.admin()).accessToken, (await t.user()).accessToken]) {
      const res = await h.request({ method: 'GET', url: '/api/admin/tenants', token });
      assert.equal(res.status, 403, res.text);
    }
  });
});

describe('GET /api/admin/tenants/:id', () => {
  it('200 for the operator; 404 for an unknown id', async () => {
    const t = await h.tenant();
    const res = await getTenant(t.id);
    assert.equal(res.status, 200);
    assert.equal(res.body.id, t.id);
    assert.equal(res.body.publishable_key, t.publishableKey);
    assert.equal((await getTenant('ten_unknown')).status, 404);
  });
});

describe('PATCH /api/admin/tenants/:id', () => {
  it('200 renames and merges settings; a later GET shows the change', async () => {
    const t = await h.tenant();
    const first = await patchTenant(t.id, {
      name: 'Renamed',
      settings: { access_token_ttl_seconds: 1200, password_policy: { min_length: 12 } },
    });
    assert.equal(first.status, 200, first.text);
    const second = await patchTenant(t.id, { settings: { password_policy: { block_common: false } } });
    assert.equal(second.status, 200, second.text);
    const res = await getTenant(t.id);
    assert.equal(res.body.name, 'Renamed');
    assert.equal(res.body.settings.access_token_ttl_seconds, 1200, 'an earlier setting survives a later patch');
    assert.deepEqual(res.body.settings.password_policy, { min_length: 12, max_length: 128, block_common: false });
    assert.ok(Date.parse(res.body.updated_at) >= Date.parse(res.body.created_at));
  });

  it('200 null resets a setting to the default', async () => {
    const t = await h.tenant();
    const set = await patchTenant(t.id, {
      settings: { access_token_ttl_seconds: 300, allowed_origins: ['https://a.example.com'] },
    });
    assert.equal(set.status, 200, set.text);
    const reset = await patchTenant(t.id, { settings: { access_token_ttl_seconds: null } });
    assert.equal(reset.status, 200, reset.text);
    assert.equal(reset.body.settings.access_token_ttl_seconds, DEFAULT_SETTINGS.access_token_ttl_seconds);
    assert.deepEqual(reset.body.settings.allowed_origins, ['https://a.example.com'], 'other settings stay');
    const resetOrigins = await patchTenant(t.id, { settings: { allowed_origins: null, password_policy: null } });
    assert.equal(resetOrigins.status, 200, resetOrigins.text);
    assert.deepEqual((await getTenant(t.id)).body.settings, DEFAULT_SETTINGS);
  });

  it('400 names the field, against the merged settings, and changes nothing', async () => {
    const t = await h.tenant();
    const base = await patchTenant(t.id, {
      settings: { refresh_token_idle_ttl_seconds: 1800, refresh_token_absolute_ttl_seconds: 3600 },
    });
    assert.equal(base.status, 200, base.text);
    // The idle lifetime alone is fine, but exceeds the absolute one stored by the previous patch.
    assertNamesField(
      await patchTenant(t.id, { settings: { refresh_token_idle_ttl_seconds: 7200 } }),
      'settings.refresh_token_idle_ttl_seconds',
    );
    assertNamesField(
      await patchTenant(t.id, { name: 'Changed', settings: { access_token_ttl_seconds: 24 * 3600 + 1 } }),
      'settings.access_token_ttl_seconds',
    );
    assertNamesField(await patchTenant(t.id, { settings: { theme: 'dark' } }), 'settings.theme');
    assertNamesField(await patchTenant(t.id, { slug: 'new-slug' }), 'slug');
    const empty = await patchTenant(t.id, {});
    assert.equal(empty.status, 400);
    assert.equal(empty.body.error.code, 'validation_failed');
    const res = await getTenant(t.id);
    assert.notEqual(res.body.name, 'Changed');
    assert.equal(res.body.settings.refresh_token_absolute_ttl_seconds, 3600);
    assert.equal(res.body.settings.refresh_token_idle_ttl_seconds, 1800);
    assert.equal(res.body.settings.access_token_ttl_seconds, DEFAULT_SETTINGS.access_token_ttl_seconds);
  });

  it('records tenant.updated in the audit log with the actor and the changed fields', async () => {
    const t = await h.tenant();
    const admin = await t.admin();
    assert.equal((await patchTenant(t.id, { name: 'Audited' }, admin.accessToken)).status, 200);
    const audit = await h.request({
      method: 'GET',
      url: '/api/admin/audit?action=tenant.updated',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(audit.status, 200);
    assert.equal(audit.body.data.length, 1);
    const [event] = audit.body.data;
    assert.deepEqual(event.actor, { type: 'user', id: admin.id });
    assert.deepEqual(event.target, { type: 'tenant', id: t.id });
    assert.deepEqual(event.data.fields, ['name']);
  });
});

describe('access_token_ttl_seconds', () => {
  it('sets expires_in and the JWT lifetime of tokens issued in that tenant only', async () => {
    const t = await h.tenant();
    const other = await h.tenant();
    assert.equal((await patchTenant(t.id, { settings: { access_token_ttl_seconds: 300 } })).status, 200);
    const email = `ttl-${unique()}@example.com`;
    const registered = await h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant: t.publishableKey,
      body: { email, password: STRONG_PASSWORD },
    });
    assert.equal(registered.status, 201, registered.text);
    assert.equal(registered.body.expires_in, 300);
    const claims = decodeJwt(registered.body.access_token);
    assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), 300);

    const login = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      tenant: t.publishableKey,
      body: { email, password: STRONG_PASSWORD },
    });
    assert.equal(login.body.expires_in, 300);
    const refreshed = await h.request({
      method: 'POST',
      url: '/api/auth/refresh',
      body: { refresh_token: login.body.refresh_token },
    });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.equal(refreshed.body.expires_in, 300, 'refreshed tokens follow the setting too');

    const elsewhere = await other.user();
    const otherClaims = decodeJwt(elsewhere.accessToken);
    assert.equal((otherClaims.exp ?? 0) - (otherClaims.iat ?? 0), 900, 'another tenant keeps the default');
  });
});

describe('tenant admins and users', () => {
  it('a tenant admin GETs and PATCHes its own tenant', async () => {
    const t = await h.tenant();
    const admin = await t.admin();
    const got = await getTenant(t.id, admin.accessToken);
    assert.equal(got.status, 200, got.text);
    assert.equal(got.body.id, t.id);
    const patched = await patchTenant(
      t.id,
      { settings: { allowed_origins: ['https://own.example.com'] } },
      admin.accessToken,
    );
    assert.equal(patched.status, 200, patched.text);
    assert.deepEqual(patched.body.settings.allowed_origins, ['https://own.example.com']);
  });

  it('404 for a tenant admin on another tenant’s id, which stays unchanged', async () => {
    const t = await h.tenant();
    const other = await h.tenant();
    const admin = await t.admin();
    const got = await getTenant(other.id, admin.accessToken);
    assert.equal(got.status, 404, got.text);
    assert.equal(got.body.error.code, 'not_found');
    const patched = await patchTenant(other.id, { name: 'Hijacked' }, admin.accessToken);
    assert.equal(patched.status, 404, patched.text);
    assert.notEqual((await getTenant(other.id)).body.name, 'Hijacked');
  });

  it('403 for a tenant admin creating a tenant', async () => {
    const t = await h.tenant();
    const admin = await t.admin();
    const slug = `by-admin-${unique()}`;
    const res = await createTenant({ name: 'Mine', slug }, admin.accessToken);
    assert.equal(res.status, 403, res.text);
    const stored = await h.deps.db.kysely.selectFrom('tenants').select('id').where('slug', '=', slug).execute();
    assert.equal(stored.length, 0);
  });

  it('403 for a plain user on its own tenant: GET, PATCH and POST', async () => {
    const t = await h.tenant();
    const user = await t.user();
    for (const res of [
      await getTenant(t.id, user.accessToken),
      await patchTenant(t.id, { name: 'Mine now' }, user.accessToken),
      await createTenant({ name: 'New' }, user.accessToken),
    ]) {
      assert.equal(res.status, 403, res.text);
      assert.equal(res.body.error.code, 'forbidden');
    }
    assert.notEqual((await getTenant(t.id)).body.name, 'Mine now');
  });

  it('a service key reads its own tenant (404 for another) but cannot PATCH it', async () => {
    const t = await h.tenant();
    const other = await h.tenant();
    const service = await t.serviceKey();
    assert.equal((await getTenant(t.id, service)).status, 200);
    assert.equal((await getTenant(other.id, service)).status, 404);
    assert.equal((await patchTenant(t.id, { name: 'By service' }, service)).status, 403);
  });
});
