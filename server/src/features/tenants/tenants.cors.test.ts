import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const unique = () => randomBytes(4).toString('hex');
const createTenant = (body: Record<string, unknown>, token = h.operator.token) =>
  h.request({ method: 'POST', url: '/api/admin/tenants', token, body });
const patchTenant = (id: string, body: Record<string, unknown>, token = h.operator.token) =>
  h.request({ method: 'PATCH', url: `/api/admin/tenants/${id}`, token, body });

describe('allowed_origins (CORS)', () => {
  const corsRequest = (origin: string, tenant?: string) =>
    h.request({ method: 'GET', url: '/.well-known/jwks.json', tenant, headers: { origin } });

  it('allows an origin only for the tenant that lists it, named by its publishable key', async () => {
    const t = await h.tenant();
    const other = await h.tenant();
    const mine = `https://app-${unique()}.example.com`;
    const theirs = `https://app-${unique()}.example.com`;
    assert.equal((await patchTenant(t.id, { settings: { allowed_origins: [mine] } })).status, 200);
    assert.equal((await patchTenant(other.id, { settings: { allowed_origins: [theirs] } })).status, 200);

    const allowed = await corsRequest(mine, t.publishableKey);
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers['access-control-allow-origin'], mine);
    assert.equal(allowed.headers.vary, 'Origin');

    for (const origin of [theirs, 'https://evil.example.com', `${mine}:8443`, mine.replace('https', 'http')]) {
      const denied = await corsRequest(origin, t.publishableKey);
      assert.equal(denied.headers['access-control-allow-origin'], undefined, origin);
    }
  });

  it('stops allowing an origin once it is removed from the list', async () => {
    const t = await h.tenant();
    const origin = `https://gone-${unique()}.example.com`;
    assert.equal((await patchTenant(t.id, { settings: { allowed_origins: [origin] } })).status, 200);
    assert.equal((await corsRequest(origin, t.publishableKey)).headers['access-control-allow-origin'], origin);
    assert.equal((await patchTenant(t.id, { settings: { allowed_origins: null } })).status, 200);
    assert.equal((await corsRequest(origin, t.publishableKey)).headers['access-control-allow-origin'], undefined);
  });

  it('a tenant created with allowed_origins allows them at once, as a PATCH does', async () => {
    const warm = await h.tenant();
    await corsRequest('https://warm.example.com', warm.publishableKey); // the index is now fresh
    const origin = `https://new-${unique()}.example.com`;
    const created = await createTenant({ name: 'New', settings: { allowed_origins: [origin] } });
    assert.equal(created.status, 201, created.text);
    const res = await corsRequest(origin, created.body.publishable_key);
    assert.equal(res.headers['access-control-allow-origin'], origin);
  });

  it('answers a preflight for an origin some tenant lists, and not for an unlisted one', async () => {
    const t = await h.tenant();
    const origin = `https://pre-${unique()}.example.com`;
    assert.equal((await patchTenant(t.id, { settings: { allowed_origins: [origin] } })).status, 200);
    const preflight = (from: string) =>
      h.request({
        method: 'OPTIONS',
        url: '/api/auth/login',
        headers: {
          origin: from,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type,x-gatehouse-tenant',
        },
      });
    const ok = await preflight(origin);
    assert.equal(ok.status, 204, ok.text);
    assert.equal(ok.headers['access-control-allow-origin'], origin);
    assert.match(String(ok.headers['access-control-allow-headers']), /x-gatehouse-tenant/);
    const denied = await preflight(`https://unlisted-${unique()}.example.com`);
    assert.equal(denied.headers['access-control-allow-origin'], undefined);
  });

  it("an authenticated call is shared only with its own tenant's origins, whatever tenant header it sends", async () => {
    const a = await h.tenant();
    const b = await h.tenant();
    const origin = `https://a-only-${unique()}.example.com`;
    assert.equal((await patchTenant(a.id, { settings: { allowed_origins: [origin] } })).status, 200);
    const userOfB = await b.user();
    const userOfA = await a.user();
    const me = (token: string, tenant?: string) =>
      h.request({ method: 'GET', url: '/api/auth/me', token, tenant, headers: { origin } });
    assert.equal((await me(userOfA.accessToken)).headers['access-control-allow-origin'], origin);
    for (const tenant of [undefined, a.publishableKey]) {
      const res = await me(userOfB.accessToken, tenant);
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], undefined, `B's user, header ${tenant}`);
      assert.match(String(res.headers.vary), /Origin/);
    }
    const refused = await h.request({ method: 'GET', url: '/api/auth/me', headers: { origin } });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['access-control-allow-origin'], undefined, 'the default tenant does not list it');
  });
});
