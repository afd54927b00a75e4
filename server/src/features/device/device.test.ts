import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { injectBrowser, launchChromium, NO_CHROMIUM, servePages, submit } from '../../../test/browser.js';
import { decideOnPage, openDevicePage, signInOnPage } from '../../../test/device-page.js';
import { createHarness, fieldsOf, type Harness, listen, type TestTenant } from '../../../test/harness.js';

// The hosted page is driven in real Chromium (it decides what Origin, Sec-Fetch-Site and cookies
// it sends), with Gatehouse on a real socket at its PUBLIC_URL (http://gatehouse.test).

let h: Harness;
let browser: Browser | null;
before(async () => {
  h = await createHarness();
  browser = await launchChromium({ 'gatehouse.test': await listen(h.app) });
});
after(async () => {
  await browser?.close();
  await h.close();
});

const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** A device request by `clientId` (null: none sent). */
async function start(t: TestTenant, clientId: string | null = 'gatehouse-vscode') {
  const res = await h.request({
    method: 'POST',
    url: '/api/auth/device/code',
    tenant: t.publishableKey,
    body: clientId === null ? {} : { client_id: clientId },
  });
  assert.equal(res.status, 200, res.text);
  return res.body as { device_code: string; user_code: string; verification_uri_complete: string; interval: number };
}

const poll = (deviceCode: string) =>
  h.request({ method: 'POST', url: '/api/auth/device/token', form: { grant_type: GRANT, device_code: deviceCode } });

describe('device sign-in (RFC 8628) in Chromium', () => {
  it('200 a person opens the page, signs in and approves; the poll then gets tokens, once', async (ctx) => {
    if (!browser) return ctx.skip(NO_CHROMIUM);
    const t = await h.tenant();
    const user = await t.user();
    const code = await start(t);
    assert.match(code.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.equal(code.verification_uri_complete, `http://gatehouse.test/device?user_code=${code.user_code}`);
    assert.equal(code.interval, 5);

    assert.equal((await poll(code.device_code)).body.error, 'authorization_pending');
    const fast = await poll(code.device_code);
    assert.equal(fast.status, 400);
    assert.equal(fast.body.error, 'slow_down');
    h.clockFor(ctx)(11_000); // the interval is now 10 s
    assert.equal((await poll(code.device_code)).body.error, 'authorization_pending');

    const headers = (await h.request({ method: 'GET', url: '/device' })).headers;
    assert.match(String(headers['content-type']), /text\/html/);
    assert.match(String(headers['content-security-policy']), /frame-ancestors 'none'/);
    assert.equal(headers['referrer-policy'], 'same-origin', 'a referrer policy that keeps Origin on our own posts');

    const page = await openDevicePage(browser, code.verification_uri_complete);
    try {
      assert.equal(await page.inputValue('#user_code'), code.user_code);
      assert.equal(await signInOnPage(page, { email: user.email, password: 'not the password' }), 401);
      assert.match((await page.textContent('[role=alert]')) ?? '', /./);
      assert.equal(await signInOnPage(page, user, code.user_code.toLowerCase()), 200, await page.content());
      assert.equal(await page.textContent('h1'), 'Approve this sign-in?');
      assert.equal(await page.textContent('p strong'), 'Gatehouse for VS Code', 'a client Gatehouse knows, by name');
      assert.ok((await page.content()).includes(user.email));
      assert.equal(await decideOnPage(page, 'approve'), 200, await page.content());
      assert.equal(await page.textContent('h1'), 'Approved');

      h.clockFor(ctx)(11_000);
      const tokens = await poll(code.device_code);
      assert.equal(tokens.status, 200, tokens.text);
      assert.equal(tokens.body.user.id, user.id);
      const me = await h.request({ method: 'GET', url: '/api/auth/me', token: tokens.body.access_token });
      assert.equal(me.status, 200);
      assert.equal((await poll(code.device_code)).body.error, 'invalid_grant', 'a device code gives tokens once');

      // Signed in on the page already: the next request goes straight to the approval.
      const next = await start(t, 'gatehouse-cli');
      await page.goto(next.verification_uri_complete);
      assert.match((await page.textContent('.note')) ?? '', new RegExp(`Signed in as ${user.email}`));
      assert.equal(await submit(page, 'button[type=submit]'), 200, await page.content());
      assert.equal(await page.textContent('h1'), 'Approve this sign-in?');
    } finally {
      await page.context().close();
    }
  });

  it('200 denied on the page: the poll answers access_denied; expired and malformed requests are named', async (ctx) => {
    if (!browser) return ctx.skip(NO_CHROMIUM);
    const t = await h.tenant();
    const user = await t.user();
    const denied = await start(t);
    const page = await openDevicePage(browser, 'http://gatehouse.test/device');
    try {
      assert.equal(await signInOnPage(page, user, denied.user_code), 200, await page.content());
      assert.equal(await decideOnPage(page, 'deny'), 200, await page.content());
      assert.equal(await page.textContent('h1'), 'Denied');
      assert.equal((await poll(denied.device_code)).body.error, 'access_denied');

      const late = await start(t);
      h.clockFor(ctx)(11 * 60_000);
      assert.equal((await poll(late.device_code)).body.error, 'expired_token');
      await page.goto('http://gatehouse.test/device');
      await page.fill('#user_code', late.user_code);
      assert.equal(
        await submit(page, 'button[type=submit]'),
        400,
        'an expired code is not accepted on the page either',
      );
    } finally {
      await page.context().close();
    }

    assert.equal((await poll('nope')).body.error, 'invalid_grant');
    const grant = await h.request({
      method: 'POST',
      url: '/api/auth/device/token',
      body: { grant_type: 'password', device_code: 'x' },
    });
    assert.equal(grant.body.error, 'unsupported_grant_type');
    const missing = await h.request({ method: 'POST', url: '/api/auth/device/token', body: { grant_type: GRANT } });
    assert.equal(missing.body.error, 'invalid_request');
  });

  it('403 a cross-site form post, even one carrying the right CSRF value, and nothing is approved', async (ctx) => {
    if (!browser) return ctx.skip(NO_CHROMIUM);
    const t = await h.tenant();
    const user = await t.user();
    const code = await start(t);
    const page = await openDevicePage(browser, code.verification_uri_complete);
    try {
      assert.equal(await signInOnPage(page, user), 200, await page.content());
      const csrf = await page.inputValue('input[name=csrf]');
      // The attacker's page (another site) posts the approval into the signed-in person's browser.
      const forged = await servePages({
        '/': {
          type: 'text/html',
          body:
            `<form method="post" action="http://gatehouse.test/device/decision">` +
            `<input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="user_code" value="${code.user_code}">` +
            `<button type="submit" name="decision" value="approve">Win a prize</button></form>`,
        },
      });
      try {
        const attack = await page.context().newPage();
        await attack.goto(forged.origin);
        assert.equal(await submit(attack, 'button'), 403);
        assert.match((await attack.textContent('[role=alert]')) ?? '', /another site/);
      } finally {
        await forged.close();
      }
      assert.equal((await poll(code.device_code)).body.error, 'authorization_pending', 'not approved');
      // The person's own approval still works.
      assert.equal(await decideOnPage(page, 'approve'), 200, await page.content());
    } finally {
      await page.context().close();
    }
  });

  it('shows only names Gatehouse knows: any other client_id is an unverified claim, shown as code', async (ctx) => {
    if (!browser) return ctx.skip(NO_CHROMIUM);
    const t = await h.tenant();
    const user = await t.user();
    for (const [clientId, claim] of [
      ['Sign in to Your Bank', 'Sign in to Your Bank'],
      [null, null],
    ] as const) {
      const code = await start(t, clientId);
      const page = await openDevicePage(browser, code.verification_uri_complete);
      try {
        assert.equal(await signInOnPage(page, user), 200, await page.content());
        assert.equal(await page.textContent('p strong'), 'An unverified application');
        const strong = await page.locator('strong').allTextContents();
        assert.ok(!strong.some((text) => text.includes('Bank')), 'the claim is never shown as a name');
        assert.equal(await page.locator('code').count(), claim === null ? 0 : 1);
        if (claim !== null) assert.equal(await page.textContent('code'), claim);
        assert.match((await page.textContent('.note')) ?? '', /does not know this application/);
      } finally {
        await page.context().close();
      }
    }
  });
});

describe('device sign-in: the page without a browser', () => {
  it('400 names client_id when it is not printable ASCII (RFC 6749 client_id = *VSCHAR)', async () => {
    const t = await h.tenant();
    for (const clientId of ['Bank\u202Egnp.exe', 'tab\there', 'Ｂａｎｋ']) {
      const res = await h.request({
        method: 'POST',
        url: '/api/auth/device/code',
        tenant: t.publishableKey,
        body: { client_id: clientId },
      });
      assert.equal(res.status, 400, clientId);
      assert.deepEqual(fieldsOf(res), ['client_id']);
    }
  });

  it('403 unless the browser says same-origin: Sec-Fetch-Site first, else an Origin of ours (not null)', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const code = await start(t);
    const b = injectBrowser(h, '203.0.113.8');
    await b.get('/device');
    const form = { user_code: code.user_code, email: user.email, password: user.password };
    const forged = await h.request({
      method: 'POST',
      url: '/device',
      ip: '203.0.113.8',
      form: { csrf: 'guessed', ...form },
    });
    assert.equal(forged.status, 403, 'no CSRF cookie, no sign-in');
    const refused: Record<string, string>[] = [
      { 'sec-fetch-site': 'cross-site', origin: 'http://gatehouse.test' },
      { 'sec-fetch-site': 'same-site', origin: 'http://gatehouse.test' },
      { origin: 'https://evil.example' },
      { origin: 'null' },
    ];
    for (const headers of refused) {
      assert.equal((await b.post('/device', form, headers)).status, 403, JSON.stringify(headers));
    }
    // What Chromium sends from a page whose referrer policy is no-referrer: the metadata decides.
    const chromium = await b.post('/device', form, { 'sec-fetch-site': 'same-origin', origin: 'null' });
    assert.equal(chromium.status, 200, chromium.text);
  });

  it('429 stops looking up codes from an address after too many wrong ones; other addresses go on', async () => {
    // Through inject: Chromium can only come from loopback, and this is about two addresses.
    const t = await h.tenant();
    const user = await t.user();
    const code = await start(t);
    const b = injectBrowser(h, '203.0.113.7');
    await b.get('/device');
    for (let i = 0; i < 10; i++) assert.equal((await b.post('/device', { user_code: 'BBBB-BBBB' })).status, 400);
    const blocked = await b.post('/device', { user_code: code.user_code, email: user.email, password: user.password });
    assert.equal(blocked.status, 429, 'even the right code is not looked up while the address is blocked');
    const elsewhere = injectBrowser(h, '198.51.100.9');
    await elsewhere.get('/device');
    const fine = await elsewhere.post('/device', {
      user_code: code.user_code,
      email: user.email,
      password: user.password,
    });
    assert.equal(fine.status, 200, 'other addresses are not affected');
  });
});
