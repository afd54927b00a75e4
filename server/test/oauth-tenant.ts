import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { FakeOidc } from './fake-oidc.js';
import type { Harness, TestTenant } from './harness.js';

/**
 * A fresh tenant with an OAuth provider `acme` discovered from the fake issuer (a client registered
 * there with `callback` as its redirect URI), and `appUri` in the tenant's allowed_redirect_uris.
 */
export async function oauthTenant(
  h: Harness,
  op: FakeOidc,
  options: { callback: string; appUri: string; clientSecret: string; scopes: string[] },
): Promise<TestTenant> {
  const t = await h.tenant();
  const clientId = `client-${randomBytes(4).toString('hex')}`;
  op.client({ clientId, clientSecret: options.clientSecret, redirectUris: [options.callback] });
  const created = await h.request({
    method: 'POST',
    url: '/api/admin/oauth/providers',
    token: h.operator.token,
    tenant: t.id,
    body: {
      name: 'acme',
      issuer: op.issuer,
      client_id: clientId,
      client_secret: options.clientSecret,
      scopes: options.scopes,
    },
  });
  assert.equal(created.status, 201, created.text);
  const settings = await h.request({
    method: 'PATCH',
    url: `/api/admin/tenants/${t.id}`,
    token: h.operator.token,
    body: { settings: { allowed_redirect_uris: [options.appUri] } },
  });
  assert.equal(settings.status, 200, settings.text);
  return t;
}
