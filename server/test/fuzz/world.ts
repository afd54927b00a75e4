import { randomBytes, randomInt } from 'node:crypto';
import type { FakeLlm } from '../fake-llm.js';
import type { FakeOidc } from '../fake-oidc.js';
import { type Harness, STRONG_PASSWORD, type TestResponse } from '../harness.js';
import type { WebhookReceiver } from '../webhook-receiver.js';

/** The real local servers a world points at (nothing leaves loopback). */
export interface Fakes {
  llm: FakeLlm;
  oidc: FakeOidc;
  receiver: WebhookReceiver;
}

/**
 * A fresh tenant with one of everything a route can name: credentials of each principal, and the
 * ids of real objects for path parameters and id-like fields. Each route gets its own world, so a
 * route that deletes or revokes what it is given spoils nothing for the next.
 */
export interface World {
  tenantId: string;
  publishableKey: string;
  credentials: { operator: string; admin: string; userJwt: string; userKey: string; service: string };
  userId: string;
  /** Objects a route may destroy, apart from the credentials above. */
  ids: {
    apiKey: string;
    session: string;
    serviceKey: string;
    plan: string;
    planName: string;
    llmProvider: string;
    llmRoute: string;
    oauthProvider: string;
    webhook: string;
    event: string;
    reservation: string;
  };
  refreshToken: string;
  deviceCode: string;
  service: string;
  redirectUri: string;
  /** The local fakes' URLs, for URL fields. */
  urls: { llm: string; receiver: string; oidc: string };
}

export const REDIRECT_URI = 'https://app.example.com/back';
export const MODEL = 'gpt-test';

export async function createWorld(h: Harness, fakes: Fakes): Promise<World> {
  const expect = (res: TestResponse, status: number, what: string) => {
    if (res.status !== status) throw new Error(`world: ${what}: ${res.status} ${res.text}`);
    return res.body;
  };
  const t = await h.tenant();
  // Each world comes from its own address, so per-address limits (sign-ups, device codes, sign-in
  // guards) meet one world's requests, not the whole run's.
  const ip = `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;
  const register = async () => {
    const body = expect(
      await h.request({
        method: 'POST',
        url: '/api/auth/register',
        tenant: t.publishableKey,
        ip,
        body: { email: `fuzz-${randomBytes(6).toString('hex')}@example.com`, password: STRONG_PASSWORD },
      }),
      201,
      'register',
    );
    return {
      id: body.user.id as string,
      email: body.user.email as string,
      password: STRONG_PASSWORD,
      accessToken: body.access_token as string,
      apiKey: body.api_key.key as string,
    };
  };
  const admin = await register();
  expect(
    await h.request({
      method: 'PATCH',
      url: `/api/admin/users/${admin.id}`,
      token: h.operator.token,
      tenant: t.id,
      body: { role: 'admin' },
    }),
    200,
    'promote admin',
  );
  const user = await register();
  // Generous limits: a fuzz run is many requests, and a 429 would hide what comes after it.
  await t.putOnPlan(user.id, { requests_per_hour: null, llm_requests_per_hour: null, tokens_per_month: null });
  const asAdmin = { token: admin.accessToken };
  const service = await t.serviceKey();
  const spareService = expect(
    await h.request({
      method: 'POST',
      url: '/api/admin/service-keys',
      ...asAdmin,
      body: { name: 'spare' },
    }),
    201,
    'service key',
  );
  const spareKey = expect(
    await h.request({ method: 'POST', url: '/api/keys', token: user.accessToken, body: { name: 'spare' } }),
    201,
    'api key',
  );
  const second = expect(await t.login(user, { ip }), 200, 'second session');
  const sessions = expect(
    await h.request({ method: 'GET', url: '/api/auth/sessions', token: second.access_token }),
    200,
    'sessions',
  );
  const spareSession = sessions.data.find((s: { current: boolean }) => s.current).id;
  const plan = expect(
    await h.request({ method: 'POST', url: '/api/admin/plans', ...asAdmin, body: { name: 'fuzzplan' } }),
    201,
    'plan',
  );
  const provider = expect(
    await h.request({
      method: 'POST',
      url: '/api/admin/llm/providers',
      ...asAdmin,
      body: { name: 'fake', base_url: fakes.llm.url, api_key: 'sk-fake', models: [MODEL] },
    }),
    201,
    'llm provider',
  );
  const route = expect(
    await h.request({
      method: 'POST',
      url: '/api/admin/llm/routes',
      ...asAdmin,
      body: { model: 'fuzz-alias', targets: [{ provider: 'fake', model: MODEL }] },
    }),
    201,
    'llm route',
  );
  expect(
    await h.request({
      method: 'PATCH',
      url: `/api/admin/tenants/${t.id}`,
      ...asAdmin,
      body: { settings: { allowed_redirect_uris: [REDIRECT_URI] } },
    }),
    200,
    'redirect uris',
  );
  const clientId = `fuzz-${randomBytes(4).toString('hex')}`;
  fakes.oidc.client({
    clientId,
    clientSecret: 'fuzz-secret',
    redirectUris: ['http://gatehouse.test/api/vault/callback', 'http://gatehouse.test/api/auth/oauth/callback'],
  });
  const oauth = expect(
    await h.request({
      method: 'POST',
      url: '/api/admin/oauth/providers',
      ...asAdmin,
      body: { name: 'acme', issuer: fakes.oidc.issuer, client_id: clientId, client_secret: 'fuzz-secret' },
    }),
    201,
    'oauth provider',
  );
  expect(
    await h.request({
      method: 'PUT',
      url: '/api/vault/connections/github',
      token: user.accessToken,
      body: { auth_data: { access_token: 'gho_fuzz' } },
    }),
    201,
    'vault connection',
  );
  const webhook = expect(
    await h.request({
      method: 'POST',
      url: '/api/admin/webhooks',
      ...asAdmin,
      body: { url: fakes.receiver.url, event_types: ['webhook.test'] },
    }),
    201,
    'webhook',
  );
  const events = expect(await h.request({ method: 'GET', url: '/api/admin/events', ...asAdmin }), 200, 'events');
  const reservation = expect(
    await h.request({
      method: 'POST',
      url: '/api/admin/usage/reservations',
      ...asAdmin,
      body: { user_id: user.id, tokens: 10 },
    }),
    201,
    'reservation',
  );
  const device = expect(
    await h.request({ method: 'POST', url: '/api/auth/device/code', tenant: t.publishableKey, ip, body: {} }),
    200,
    'device code',
  );
  return {
    tenantId: t.id,
    publishableKey: t.publishableKey,
    credentials: {
      operator: h.operator.token,
      admin: admin.accessToken,
      userJwt: user.accessToken,
      userKey: user.apiKey,
      service,
    },
    userId: user.id,
    ids: {
      apiKey: spareKey.id,
      session: spareSession,
      serviceKey: spareService.id,
      plan: plan.id,
      planName: plan.name,
      llmProvider: provider.id,
      llmRoute: route.id,
      oauthProvider: oauth.id,
      webhook: webhook.id,
      event: events.data[0].id,
      reservation: reservation.id,
    },
    refreshToken: second.refresh_token,
    deviceCode: device.device_code,
    service: 'github',
    redirectUri: REDIRECT_URI,
    urls: { llm: fakes.llm.url, receiver: fakes.receiver.url, oidc: fakes.oidc.issuer },
  };
}

/** The id a path parameter names, by route. */
export function pathParam(world: World, path: string, name: string): string {
  if (name === 'service') return world.service;
  if (name === 'provider') return 'acme';
  const byPrefix: [string, string][] = [
    ['/api/auth/sessions/', world.ids.session],
    ['/api/keys/', world.ids.apiKey],
    ['/api/admin/tenants/', world.tenantId],
    ['/api/admin/service-keys/', world.ids.serviceKey],
    ['/api/admin/users/', world.userId],
    ['/api/admin/plans/', world.ids.plan],
    ['/api/admin/usage/reservations/', world.ids.reservation],
    ['/api/admin/llm/providers/', world.ids.llmProvider],
    ['/api/admin/llm/routes/', world.ids.llmRoute],
    ['/api/admin/oauth/providers/', world.ids.oauthProvider],
    ['/api/admin/webhooks/', world.ids.webhook],
  ];
  return byPrefix.find(([prefix]) => path.startsWith(prefix))?.[1] ?? 'fuzz';
}
