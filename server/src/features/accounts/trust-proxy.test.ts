import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';

// TRUST_PROXY names the proxies: only they may say who the client is (X-Forwarded-For).
let h: Harness;
before(async () => {
  h = await createHarness({ TRUST_PROXY: '10.0.0.0/8' });
});
after(() => h.close());

describe('client address behind TRUST_PROXY', () => {
  it('429 for guesses from an untrusted peer whatever X-Forwarded-For it sends: the login guard keys by the peer', async () => {
    const t = await h.tenant();
    const user = await t.user();
    for (let i = 0; i < 10; i++) {
      const res = await t.login(
        { email: user.email, password: `guess number ${i}` },
        { ip: '203.0.113.50', headers: { 'x-forwarded-for': `198.51.100.${i}` } },
      );
      assert.equal(res.status, 401, res.text);
    }
    const spoofed = await t.login(
      { email: user.email, password: 'guess number 11' },
      { ip: '203.0.113.50', headers: { 'x-forwarded-for': '198.51.100.200' } },
    );
    assert.equal(spoofed.status, 429, 'a new X-Forwarded-For is not a new address');
    const owner = await t.login({ email: user.email, password: user.password }, { ip: '203.0.113.51' });
    assert.equal(owner.status, 200, 'the owner from another address is not blocked');
  });

  it('200 through a trusted proxy: the client is the address the proxy saw, not one the client wrote first', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const res = await t.login(
      { email: user.email, password: user.password },
      // The client wrote "1.2.3.4" itself; the proxy (10.1.2.3) appended the address it saw.
      { ip: '10.1.2.3', headers: { 'x-forwarded-for': '1.2.3.4, 198.51.100.7' } },
    );
    assert.equal(res.status, 200, res.text);
    const sessions = await h.request({ method: 'GET', url: '/api/auth/sessions', token: res.body.access_token });
    const current = sessions.body.data.find((s: { current: boolean }) => s.current);
    assert.equal(current.ip, '198.51.100.7');
  });
});
