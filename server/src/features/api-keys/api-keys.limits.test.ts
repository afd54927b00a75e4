import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';
import { keyCalls } from './api-keys.fixtures.js';
import { MAX_LIVE_KEYS_PER_USER } from './api-keys.service.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const { createKey, remove, rotate, list } = keyCalls(() => h);

describe('API keys per user', () => {
  it(`409 resource_limit_reached past ${MAX_LIVE_KEYS_PER_USER} live keys; a revoke makes room, a rotation needs none`, async () => {
    const t = await h.tenant();
    const user = await t.user(); // holds its primary key
    await t.putOnPlan(user.id, { requests_per_hour: 100_000 });
    for (let i = 1; i < MAX_LIVE_KEYS_PER_USER; i++) await createKey(user.accessToken, { name: `k${i}` });
    const refused = await h.request({ method: 'POST', url: '/api/keys', token: user.accessToken, body: { name: 'x' } });
    assert.equal(refused.status, 409, refused.text);
    assert.equal(refused.body.error.code, 'resource_limit_reached');
    assert.deepEqual(refused.body.error.details, { resource: 'api_keys', limit: MAX_LIVE_KEYS_PER_USER });
    assert.equal((await list(user.accessToken)).body.data.length, MAX_LIVE_KEYS_PER_USER, 'nothing written');

    // A rotation replaces a key: allowed at the cap (the old one lives on for its overlap only).
    const rotated = await rotate(user.accessToken, user.apiKeyId, { overlap_seconds: 0 });
    assert.match(rotated.key, /^gk_/);
    assert.equal((await remove(user.accessToken, rotated.id)).status, 204);
    assert.equal((await remove(user.accessToken, (await list(user.accessToken)).body.data[0].id)).status, 204);
    await createKey(user.accessToken, { name: 'room again' });
  });
});

describe('verify counters past 2^31', () => {
  it('a limit counted past 2^31 in its window stays RATE_LIMITED as data, never 503 for the rest of the hour', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const service = await t.serviceKey();
    // Ten entries of the same limit in one call count ten times: 10,000,000 a call, the most verify takes.
    const hit = { name: 'calls', cost: 1_000_000, limit: 1_000_000_000, duration: 3_600_000 };
    const count = () =>
      h.request({
        method: 'POST',
        url: '/api/keys/verify',
        token: service,
        body: { key: user.apiKey, ratelimits: Array.from({ length: 10 }, () => hit) },
      });
    // 215 such calls pass 2^31 - 1.
    let last = await count();
    for (let i = 1; i < 215; i++) {
      last = await count();
      assert.equal(last.status, 200, `call ${i}: ${last.text}`);
    }
    assert.equal(last.body.code, 'RATE_LIMITED');
    assert.equal(last.body.ratelimits[0].remaining, 0);
    const plain = await h.request({
      method: 'POST',
      url: '/api/keys/verify',
      token: service,
      body: { key: user.apiKey },
    });
    assert.equal(plain.body.code, 'VALID', 'the key itself still verifies');
  });
});
