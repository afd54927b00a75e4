import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FakeOidc, startFakeOidc } from '../../../test/fake-oidc.js';
import { createHarness, type Harness, STRONG_PASSWORD } from '../../../test/harness.js';
import { oauthTenant } from '../../../test/oauth-tenant.js';

// Sign-up floods: counted per client address, and unable to starve other tenants' sign-ins.

describe('sign-ups per address', () => {
  let h: Harness;
  before(async () => {
    h = await createHarness({ SIGNUP_LIMIT_PER_IP: '3' });
  });
  after(() => h.close());

  const signUp = (tenant: string, ip: string, email: string) =>
    h.request({
      method: 'POST',
      url: '/api/auth/register',
      tenant,
      ip,
      body: { email, password: STRONG_PASSWORD },
    });

  it('429 rate_limited with Retry-After beyond the limit, counted over every tenant; nothing is written; other addresses sign up', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const ip = '203.0.113.20';
    assert.equal((await signUp(t1.publishableKey, ip, 'a@example.com')).status, 201);
    assert.equal((await signUp(t2.publishableKey, ip, 'b@example.com')).status, 201);
    assert.equal((await signUp(t1.publishableKey, ip, 'c@example.com')).status, 201);
    const refused = await signUp(t2.publishableKey, ip, 'd@example.com');
    assert.equal(refused.status, 429, refused.text);
    assert.equal(refused.body.error.code, 'rate_limited');
    assert.ok(Number(refused.headers['retry-after']) > 0);
    const rows = await h.deps.db.kysely
      .selectFrom('users')
      .select('email')
      .where('tenant_id', '=', t2.id)
      .where('email', '=', 'd@example.com')
      .execute();
    assert.equal(rows.length, 0);
    assert.equal((await signUp(t2.publishableKey, '203.0.113.21', 'd@example.com')).status, 201);
  });

  it('429 for the fourth address of one IPv6 /64: the block counts as one address', async () => {
    const t = await h.tenant();
    for (const [i, ip] of ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:ffff::3'].entries()) {
      assert.equal((await signUp(t.publishableKey, ip, `v6-${i}@example.com`)).status, 201);
    }
    assert.equal((await signUp(t.publishableKey, '2001:db8:1:2::4', 'v6-3@example.com')).status, 429);
    assert.equal((await signUp(t.publishableKey, '2001:db8:1:3::1', 'v6-4@example.com')).status, 201);
  });
});

describe('social sign-ups per address', () => {
  let h: Harness;
  let op: FakeOidc;
  const APP = 'https://app.example.com/signed-in';
  before(async () => {
    h = await createHarness({ SIGNUP_LIMIT_PER_IP: '2', OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
    op = await startFakeOidc();
  });
  after(async () => {
    await h.close();
    await op.close();
  });

  /** A browser at `ip` signs in through the provider as `sub`; returns where Gatehouse sends it back. */
  async function socialSignIn(publishableKey: string, ip: string, sub: string): Promise<URL> {
    op.nextUser({ sub, email: `${sub}@example.com`, email_verified: true, name: sub });
    const params = new URLSearchParams({ redirect_uri: APP, tenant: publishableKey });
    const start = await h.request({ method: 'GET', url: `/api/auth/oauth/acme/start?${params}`, ip });
    assert.equal(start.status, 302, start.text);
    const back = await op.authorize(String(start.headers.location));
    const done = await h.request({ method: 'GET', url: `${back.pathname}${back.search}`, ip });
    assert.equal(done.status, 302, done.text);
    return new URL(String(done.headers.location));
  }

  it('count as sign-ups: beyond the limit the app gets temporarily_unavailable and no account is made; a known identity still signs in', async () => {
    const t = await oauthTenant(h, op, {
      callback: 'http://gatehouse.test/api/auth/oauth/callback',
      appUri: APP,
      clientSecret: 'secret-secret-secret',
      scopes: ['openid', 'email', 'profile'],
    });
    const ip = '203.0.113.40';
    assert.ok((await socialSignIn(t.publishableKey, ip, 'social-a')).searchParams.get('code'));
    assert.ok((await socialSignIn(t.publishableKey, ip, 'social-b')).searchParams.get('code'));
    const refused = await socialSignIn(t.publishableKey, ip, 'social-c');
    assert.equal(refused.searchParams.get('error'), 'temporarily_unavailable', refused.href);
    assert.match(refused.searchParams.get('error_description') ?? '', /Too many sign-ups/);
    const rows = await h.deps.db.kysely
      .selectFrom('users')
      .select('id')
      .where('tenant_id', '=', t.id)
      .where('email', '=', 'social-c@example.com')
      .execute();
    assert.equal(rows.length, 0);
    assert.ok((await socialSignIn(t.publishableKey, ip, 'social-a')).searchParams.get('code'), 'not a sign-up');
  });
});

describe('hashing shared fairly between tenants', () => {
  // One costly hash at a time and four waiting: a flood keeps the queue full.
  let h: Harness;
  before(async () => {
    h = await createHarness({
      ARGON2_MEMORY_KIB: '65536',
      ARGON2_ITERATIONS: '3',
      HASH_CONCURRENCY: '1',
      HASH_QUEUE_MAX: '4',
    });
  });
  after(() => h.close());

  it("200 for a sign-in in one tenant while another tenant's sign-up flood keeps the hashing queue full", async () => {
    const quiet = await h.tenant();
    const user = await quiet.user();
    const noisy = await h.tenant();

    // Twenty clients (each its own address) signing up again as soon as they are answered.
    let flooding = true;
    let sent = 0;
    let signalFull!: () => void;
    const full = new Promise<void>((resolve) => {
      signalFull = resolve;
    });
    const statuses: number[] = [];
    const flood = Array.from({ length: 20 }, async (_, client) => {
      while (flooding) {
        const n = sent++;
        const res = await h.request({
          method: 'POST',
          url: '/api/auth/register',
          tenant: noisy.publishableKey,
          ip: `198.51.100.${client + 1}`,
          body: { email: `flood${n}@example.com`, password: STRONG_PASSWORD },
        });
        statuses.push(res.status);
        if (res.status === 503) signalFull();
      }
    });
    await full; // refused once: the queue is full of the flood's hashes
    const signIn = await quiet.login({ email: user.email, password: user.password });
    flooding = false;
    await Promise.all(flood);

    assert.equal(signIn.status, 200, signIn.text);
    assert.ok(
      statuses.every((s) => s === 201 || s === 503),
      statuses.join(','),
    );
    assert.ok(statuses.includes(201), 'the flooding tenant still gets its share');
  });
});
