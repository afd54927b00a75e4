import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pageBrowser } from '../../../test/device-page.js';
import { createHarness, type Harness, type TestTenant } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

async function start(t: TestTenant, clientId = 'VS Code') {
  const res = await h.request({
    method: 'POST',
    url: '/api/auth/device/code',
    tenant: t.publishableKey,
    body: { client_id: clientId },
  });
  assert.equal(res.status, 200, res.text);
  return res.body as { device_code: string; user_code: string; verification_uri_complete: string; interval: number };
}

const poll = (deviceCode: string) =>
  h.request({ method: 'POST', url: '/api/auth/device/token', form: { grant_type: GRANT, device_code: deviceCode } });

describe('device sign-in (RFC 8628)', () => {
  it('issues codes, answers authorization_pending then slow_down, and gives tokens once approved on the page', async (ctx) => {
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

    const b = pageBrowser(h);
    const form = await b.get(`/device?user_code=${code.user_code}`);
    assert.equal(form.status, 200);
    assert.match(String(form.headers['content-type']), /text\/html/);
    assert.match(String(form.headers['content-security-policy']), /frame-ancestors 'none'/);
    assert.ok(form.text.includes(`value="${code.user_code}"`));

    const wrong = await b.post('/device', {
      user_code: code.user_code,
      email: user.email,
      password: 'not the password',
    });
    assert.equal(wrong.status, 401);
    const confirm = await b.post('/device', {
      user_code: code.user_code.toLowerCase(),
      email: user.email,
      password: user.password,
    });
    assert.equal(confirm.status, 200, confirm.text);
    assert.ok(confirm.text.includes('VS Code'), 'the page names the application that asks');
    assert.ok(confirm.text.includes(user.email));
    const approved = await b.post('/device/decision', { user_code: code.user_code, decision: 'approve' });
    assert.equal(approved.status, 200);
    assert.match(approved.text, /Approved/);

    h.clockFor(ctx)(11_000);
    const tokens = await poll(code.device_code);
    assert.equal(tokens.status, 200, tokens.text);
    assert.equal(tokens.body.user.id, user.id);
    const me = await h.request({ method: 'GET', url: '/api/auth/me', token: tokens.body.access_token });
    assert.equal(me.status, 200);
    assert.equal((await poll(code.device_code)).body.error, 'invalid_grant', 'a device code gives tokens once');

    // Signed in on the page already: the next request goes straight to the approval.
    const next = await start(t, 'gatehouse-cli');
    const straight = await b.post('/device', { user_code: next.user_code });
    assert.equal(straight.status, 200);
    assert.ok(straight.text.includes('gatehouse-cli'));
  });

  it('answers access_denied when denied, expired_token when too late, and names bad requests', async (ctx) => {
    const t = await h.tenant();
    const user = await t.user();
    const denied = await start(t);
    const b = pageBrowser(h);
    await b.get('/device');
    await b.post('/device', { user_code: denied.user_code, email: user.email, password: user.password });
    assert.match((await b.post('/device/decision', { user_code: denied.user_code, decision: 'deny' })).text, /Denied/);
    assert.equal((await poll(denied.device_code)).body.error, 'access_denied');

    const late = await start(t);
    h.clockFor(ctx)(11 * 60_000);
    assert.equal((await poll(late.device_code)).body.error, 'expired_token');
    const stale = await b.post('/device', { user_code: late.user_code });
    assert.equal(stale.status, 400, 'an expired code is not accepted on the page either');

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

  it('checks CSRF and the origin on the page, and stops looking up codes after too many wrong ones', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const code = await start(t);
    const b = pageBrowser(h, '203.0.113.7');
    await b.get('/device');
    const forged = await h.request({
      method: 'POST',
      url: '/device',
      ip: '203.0.113.7',
      form: { csrf: 'guessed', user_code: code.user_code, email: user.email, password: user.password },
    });
    assert.equal(forged.status, 403, 'no CSRF cookie, no sign-in');
    const crossSite = await b.post(
      '/device',
      { user_code: code.user_code, email: user.email, password: user.password },
      { origin: 'https://evil.example' },
    );
    assert.equal(crossSite.status, 403);

    for (let i = 0; i < 10; i++) assert.equal((await b.post('/device', { user_code: 'BBBB-BBBB' })).status, 400);
    const blocked = await b.post('/device', { user_code: code.user_code, email: user.email, password: user.password });
    assert.equal(blocked.status, 429, 'even the right code is not looked up while the address is blocked');
    const elsewhere = pageBrowser(h, '198.51.100.9');
    await elsewhere.get('/device');
    const fine = await elsewhere.post('/device', {
      user_code: code.user_code,
      email: user.email,
      password: user.password,
    });
    assert.equal(fine.status, 200, 'other addresses are not affected');
  });
});
