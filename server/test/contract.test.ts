import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { registerAuthentication } from '../src/http/authenticate.js';
import { createHarness, type Harness, type RequestOptions, type TestTenant, type TestUser } from './harness.js';

/**
 * The shared contract: every non-public route answers 401 without a credential and 403 to a
 * principal it does not accept; resources of another tenant answer 404, never 403.
 */
let h: Harness;
let tenant: TestTenant;
let user: TestUser;
let admin: TestUser;
let serviceKey: string;

before(async () => {
  h = await createHarness();
  tenant = await h.tenant();
  user = await tenant.user();
  admin = await tenant.admin();
  serviceKey = await tenant.serviceKey();
});
after(() => h.close());

const concrete = (url: string) => url.replace(/:(\w+)/g, 'x_0000');
type Method = RequestOptions['method'];

describe('access contract of every route', () => {
  it('covers the whole surface (a new route is checked without anyone listing it)', () => {
    const protectedRoutes = h.app.accessTable.filter((r) => r.auth !== 'public');
    assert.ok(protectedRoutes.length >= 20, `only ${protectedRoutes.length} protected routes found`);
  });

  it('401 unauthorized without a credential, with WWW-Authenticate', async () => {
    for (const route of h.app.accessTable.filter((r) => r.auth !== 'public')) {
      const res = await h.request({ method: route.method as Method, url: concrete(route.url), body: {} });
      assert.equal(res.status, 401, `${route.method} ${route.url}: ${res.text}`);
      assert.equal(res.body.error.code, 'unauthorized');
      assert.equal(res.headers['www-authenticate'], 'Bearer');
    }
  });

  it('403 forbidden for a principal the route does not accept', async () => {
    const as = { user: () => user.accessToken, admin: () => admin.accessToken, service: () => serviceKey };
    let checked = 0;
    for (const route of h.app.accessTable) {
      if (route.auth === 'public') continue;
      const refused = [
        route.auth.includes('user') ? undefined : 'user',
        route.auth.includes('user') || route.auth.includes('admin') ? undefined : 'admin',
        route.auth.includes('service') ? undefined : 'service',
      ].filter((who): who is 'user' | 'admin' | 'service' => who !== undefined);
      for (const who of refused) {
        const res = await h.request({
          method: route.method as Method,
          url: concrete(route.url),
          token: as[who](),
          body: {},
        });
        assert.equal(res.status, 403, `${who} on ${route.method} ${route.url}: ${res.text}`);
        assert.equal(res.body.error.code, 'forbidden');
        checked++;
      }
    }
    assert.ok(checked >= 15, `only ${checked} refusals checked`);
  });

  it("404 for another tenant's resources, for its admin and for its users", async () => {
    const other = await h.tenant();
    const otherAdmin = await other.admin();
    const otherUser = await other.user();
    const sessionId = (await h.request({ method: 'GET', url: '/api/auth/sessions', token: user.accessToken })).body
      .data[0].id;
    const serviceKeyId = (await h.request({ method: 'GET', url: '/api/admin/service-keys', token: admin.accessToken }))
      .body.data[0].id;
    const cases: { method: Method; url: string; token: string; body?: unknown }[] = [
      { method: 'GET', url: `/api/admin/users/${user.id}`, token: otherAdmin.accessToken },
      { method: 'PATCH', url: `/api/admin/users/${user.id}`, token: otherAdmin.accessToken, body: { name: 'x' } },
      { method: 'GET', url: `/api/admin/tenants/${tenant.id}`, token: otherAdmin.accessToken },
      { method: 'PATCH', url: `/api/admin/tenants/${tenant.id}`, token: otherAdmin.accessToken, body: { name: 'x' } },
      { method: 'DELETE', url: `/api/admin/service-keys/${serviceKeyId}`, token: otherAdmin.accessToken },
      { method: 'DELETE', url: `/api/keys/${user.apiKeyId}`, token: otherUser.accessToken },
      { method: 'POST', url: `/api/keys/${user.apiKeyId}/rotate`, token: otherUser.accessToken, body: {} },
      { method: 'DELETE', url: `/api/auth/sessions/${sessionId}`, token: otherUser.accessToken },
    ];
    for (const c of cases) {
      const res = await h.request(c);
      assert.equal(res.status, 404, `${c.method} ${c.url}: ${res.text}`);
      assert.equal(res.body.error.code, 'not_found');
    }
    assert.equal(
      (await h.request({ method: 'GET', url: '/api/auth/me', token: user.apiKey })).status,
      200,
      'untouched',
    );
  });

  it('refuses to register a route that declares no access', async () => {
    const app = Fastify();
    // biome-ignore lint/suspicious/noExplicitAny: only the hooks are exercised here.
    registerAuthentication(app as any, h.deps);
    assert.throws(() => app.get('/open', async () => 'x'), /declares no config\.auth/);
    app.get('/declared', { config: { auth: 'public' } }, async () => 'x');
    await app.close();
  });
});
