import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FakeOidc, startFakeOidc } from '../../../test/fake-oidc.js';
import { createHarness, fieldsOf, type Harness } from '../../../test/harness.js';
import { oauthTenant } from '../../../test/oauth-tenant.js';

// Where a browser may be sent, and which origins CORS opens to: http(s) only, plain http only on
// loopback (lib/web-urls.ts; ADR 0015).

let h: Harness;
let op: FakeOidc;
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  op = await startFakeOidc();
});
after(async () => {
  await h.close();
  await op.close();
});

const patchSettings = async (settings: Record<string, unknown>) => {
  const t = await h.tenant();
  return h.request({
    method: 'PATCH',
    url: `/api/admin/tenants/${t.id}`,
    token: h.operator.token,
    body: { settings },
  });
};

describe('allowed_redirect_uris and allowed_origins', () => {
  it('400 names the entry for javascript:, data:, custom schemes, http off loopback, credentials and fragments', async () => {
    for (const uri of [
      'javascript:alert(document.cookie)',
      'JavaScript://app.example.com/%0Aalert(1)',
      'data:text/html,<script>alert(1)</script>',
      'com.example.app:/callback',
      'file:///etc/passwd',
      'http://app.example.com/callback',
      'https://user:secret@app.example.com/callback',
      'https://app.example.com/callback#frag',
    ]) {
      const res = await patchSettings({ allowed_redirect_uris: ['https://app.example.com/ok', uri] });
      assert.equal(res.status, 400, `${uri}: ${res.text}`);
      assert.deepEqual(fieldsOf(res), ['settings.allowed_redirect_uris.1'], uri);
    }
    for (const origin of ['http://app.example.com', 'https://app.example.com:443', 'HTTPS://APP.example.com']) {
      const res = await patchSettings({ allowed_origins: [origin] });
      assert.equal(res.status, 400, `${origin}: ${res.text}`);
      assert.deepEqual(fieldsOf(res), ['settings.allowed_origins.0'], origin);
    }
  });

  it('200 for https anywhere and plain http on loopback (RFC 8252 §7.3)', async () => {
    const uris = [
      'https://app.example.com/callback',
      'http://127.0.0.1:8765/callback',
      'http://[::1]:8765/callback',
      'http://localhost:3000/callback',
    ];
    const origins = ['https://app.example.com', 'http://localhost:5173', 'http://127.0.0.1:8080'];
    const res = await patchSettings({ allowed_redirect_uris: uris, allowed_origins: origins });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.settings.allowed_redirect_uris, uris);
    assert.deepEqual(res.body.settings.allowed_origins, origins);
  });

  it('a javascript: URI saved before this check is refused where it would be used (sign-in start, vault connect)', async () => {
    const t = await oauthTenant(h, op, {
      callback: 'http://gatehouse.test/api/auth/oauth/callback',
      appUri: 'https://app.example.com/back',
      clientSecret: 'redirect-secret',
      scopes: ['openid'],
    });
    const bad = 'javascript:alert(document.domain)';
    await h.deps.db.kysely
      .updateTable('tenants')
      .set({ settings: JSON.stringify({ allowed_redirect_uris: ['https://app.example.com/back', bad] }) })
      .where('id', '=', t.id)
      .execute();
    h.deps.caches.auth.clear();
    const start = await h.request({
      method: 'GET',
      url: `/api/auth/oauth/acme/start?${new URLSearchParams({ tenant: t.publishableKey, redirect_uri: bad })}`,
    });
    assert.equal(start.status, 400, start.text);
    assert.deepEqual(fieldsOf(start), ['redirect_uri']);
    assert.equal(start.body.error.details.fields[0].in, 'querystring');
    const user = await t.user();
    const link = await h.request({
      method: 'POST',
      url: '/api/vault/auth-url',
      token: user.accessToken,
      body: { service: 'acme', redirect_after: bad },
    });
    assert.equal(link.status, 400, link.text);
    assert.deepEqual(fieldsOf(link), ['redirect_after']);
  });
});

describe('webhook endpoint URLs', () => {
  it('400 names url for javascript: and other non-http schemes', async () => {
    const t = await h.tenant();
    for (const url of ['javascript:alert(1)', 'data:,x', 'file:///etc/passwd', 'gopher://example.com/']) {
      const res = await h.request({
        method: 'POST',
        url: '/api/admin/webhooks',
        token: h.operator.token,
        tenant: t.id,
        body: { url },
      });
      assert.equal(res.status, 400, `${url}: ${res.text}`);
      assert.deepEqual(fieldsOf(res), ['url'], url);
    }
  });
});
