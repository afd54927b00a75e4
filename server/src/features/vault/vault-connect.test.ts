import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext } from 'playwright-core';
import { injectBrowser, launchChromium, NO_CHROMIUM, servePages } from '../../../test/browser.js';
import { type FakeOidc, startFakeOidc } from '../../../test/fake-oidc.js';
import { createHarness, type Harness, listen } from '../../../test/harness.js';
import { oauthTenant } from '../../../test/oauth-tenant.js';

// A vault connect link is bound to the person and the browser that continue from it: the link is
// Gatehouse's page (naming whose connection it makes), its Continue binds the state to that
// browser's cookie, and the callback refuses the provider's answer in any other browser
// (docs/adr/0017, RFC 9700 §4.7). Browsers are real Chromium contexts (each its own cookies), with
// Gatehouse on a real socket at its PUBLIC_URL and the OpenID provider on loopback.

let h: Harness;
let op: FakeOidc;
let browser: Browser | null;
let app: Awaited<ReturnType<typeof servePages>>;
const CALLBACK = 'http://gatehouse.test/api/vault/callback';
/** The app's page the browser returns to, on loopback (plain http is allowed only there: ADR 0015). */
let APP_RETURN: string;

before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  op = await startFakeOidc();
  app = await servePages({ '/connected': { type: 'text/html', body: '<p>back in the app</p>' } });
  APP_RETURN = `${app.origin}/connected`;
  browser = await launchChromium({ 'gatehouse.test': await listen(h.app) });
});
after(async () => {
  await browser?.close();
  await app.close();
  await h.close();
  await op.close();
});

async function setup() {
  const t = await oauthTenant(h, op, {
    callback: CALLBACK,
    appUri: APP_RETURN,
    clientSecret: 'client-secret',
    scopes: ['openid', 'email', 'offline_access'],
  });
  return { t, serviceKey: await t.serviceKey() };
}

async function authLink(s: { serviceKey: string }, userId: string) {
  const res = await h.request({
    method: 'POST',
    url: '/api/vault/auth-url',
    token: s.serviceKey,
    body: { service: 'acme', user_id: userId, redirect_after: APP_RETURN },
  });
  assert.equal(res.status, 200, res.text);
  return res.body.url as string;
}

const getAuth = (s: { serviceKey: string }, userId: string) =>
  h.request({ method: 'GET', url: `/api/vault/connections/acme?user_id=${userId}`, token: s.serviceKey });

/** A person's browser: its own cookies. */
const person = (): Promise<BrowserContext> => browser!.newContext();

describe('vault connect links in Chromium', () => {
  it('200 completed in the browser that opened it: the page names whose connection it is, the tokens are stored', async (ctx) => {
    if (!browser) return ctx.skip(NO_CHROMIUM);
    const s = await setup();
    const link = await authLink(s, 'user-a');
    assert.match(link, /^http:\/\/gatehouse\.test\/vault\/connect\?state=/, 'the link is Gatehouse’s page');
    const a = await person();
    try {
      const page = await a.newPage();
      assert.equal((await page.goto(link))?.status(), 200);
      assert.equal(await page.textContent('h1'), 'Connect your acme account');
      assert.equal(await page.textContent('code'), 'user-a', 'whose connection it makes');
      await Promise.all([page.waitForURL(`${APP_RETURN}?service=acme&status=connected`), page.click('button')]);
      const got = await getAuth(s, 'user-a');
      assert.equal(got.status, 200, got.text);
      assert.equal(typeof got.body.auth_data.access_token, 'string');
    } finally {
      await a.close();
    }
  });

  it('400 opened in browser A and completed in browser B: nothing is stored, B sees why, and B cannot open the link', async (ctx) => {
    if (!browser) return ctx.skip(NO_CHROMIUM);
    const s = await setup();
    const link = await authLink(s, 'user-b');
    const a = await person();
    const b = await person();
    try {
      // A continues from the link; the provider's authorization URL it is sent to is held there
      // (DevTools' Fetch domain sees the redirect, which page routes do not) and ends up in B.
      const pageA = await a.newPage();
      await pageA.goto(link);
      const devtools = await a.newCDPSession(pageA);
      await devtools.send('Fetch.enable', { patterns: [{ urlPattern: `${op.issuer}/*` }] });
      const held = new Promise<string>((resolve) =>
        devtools.on('Fetch.requestPaused', (event) => {
          resolve(event.request.url);
          void devtools.send('Fetch.failRequest', { requestId: event.requestId, errorReason: 'Aborted' });
        }),
      );
      await pageA.click('button');
      const providerUrl = await held;
      assert.ok(providerUrl.startsWith(`${op.issuer}/`), providerUrl);

      const pageB = await b.newPage();
      assert.equal((await pageB.goto(link))?.status(), 403, 'the link page refuses a second browser');
      assert.match((await pageB.textContent('[role=alert]')) ?? '', /already opened in another browser/);

      const callback = await pageB.goto(providerUrl); // B signs in at the provider and comes back
      assert.equal(new URL(pageB.url()).pathname, '/api/vault/callback');
      assert.equal(callback?.status(), 400);
      assert.match((await pageB.textContent('body')) ?? '', /not started in this browser: nothing was stored/);
      assert.equal((await getAuth(s, 'user-b')).status, 404, 'nothing stored for the link’s owner');
      assert.ok(h.logs.some((line) => line.includes('a connect callback in another browser')));
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('vault connect links without a browser', () => {
  it("the page names a Gatehouse user's account by email; a form post without the page's token is 403", async () => {
    const s = await setup();
    const user = await s.t.user();
    const res = await h.request({
      method: 'POST',
      url: '/api/vault/auth-url',
      token: user.accessToken,
      body: { service: 'acme' },
    });
    assert.equal(res.status, 200, res.text);
    const link = new URL(res.body.url);
    const jar = injectBrowser(h);
    const page = await jar.get(`${link.pathname}${link.search}`);
    assert.equal(page.status, 200);
    assert.ok(page.text.includes(`the account <strong>${user.email}</strong>`), page.text);
    assert.equal(page.headers['referrer-policy'], 'same-origin');
    const state = link.searchParams.get('state') ?? '';
    const forged = await h.request({ method: 'POST', url: '/vault/connect', form: { state, csrf: 'guessed' } });
    assert.equal(forged.status, 403);
    const crossSite = await jar.post('/vault/connect', { state }, { 'sec-fetch-site': 'cross-site' });
    assert.equal(crossSite.status, 403);
    assert.equal((await jar.post('/vault/connect', { state })).status, 303, 'its own page continues');
  });

  it('400 a callback without the browser cookie stores nothing; 400 an unknown link', async () => {
    const s = await setup();
    const jar = injectBrowser(h);
    const link = new URL(await authLink(s, 'user-c'));
    await jar.get(`${link.pathname}${link.search}`);
    const provider = await jar.post('/vault/connect', { state: link.searchParams.get('state') ?? '' });
    const back = await op.authorize(String(provider.headers.location));
    const bare = await h.request({ method: 'GET', url: `${back.pathname}${back.search}` });
    assert.equal(bare.status, 400, bare.text);
    assert.equal((await getAuth(s, 'user-c')).status, 404);
    assert.equal((await jar.get('/vault/connect?state=nope')).status, 400);
  });
});
