import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, type RequestOptions } from '../../../test/harness.js';

// POST /api/auth/device/token answers RFC 6749 §5.2 / RFC 8628 §3.5 error bodies, also for
// requests that never reach its handler (bad JSON, wrong types, NUL, too large).

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const token = (options: Partial<RequestOptions>) =>
  h.request({ method: 'POST', url: '/api/auth/device/token', ...options });

describe('POST /api/auth/device/token with a malformed request', () => {
  it('400 invalid_request in the RFC 6749 shape, never a 500, whatever is malformed', async () => {
    const json = { 'content-type': 'application/json' };
    const cases: [string, Partial<RequestOptions>][] = [
      ['bad JSON', { headers: json, body: '{"device_code":' }],
      ['an empty JSON body', { headers: json, body: '' }],
      ['a device_code too long', { body: { device_code: 'x'.repeat(300) } }],
      ['a device_code that is an object', { body: { device_code: { a: 1 } } }],
      ['NUL in the device_code', { form: { grant_type: 'x', device_code: 'a\u0000b' } }],
      ['JSON nested 5,000 levels', { headers: json, body: `{"device_code":${'['.repeat(5000)}${']'.repeat(5000)}}` }],
      ['a __proto__ key', { headers: json, body: '{"device_code":"x","__proto__":{"a":1}}' }],
      ['an unsupported content type', { headers: { 'content-type': 'application/xml' }, body: '<a/>' }],
      ['a body over the size limit', { headers: json, body: `{"device_code":"${'x'.repeat(1_100_000)}"}` }],
    ];
    for (const [what, options] of cases) {
      const res = await token(options);
      assert.equal(res.status, 400, `${what}: ${res.text}`);
      assert.equal(res.body?.error, 'invalid_request', `${what}: ${res.text}`);
      assert.equal(typeof res.body.error_description, 'string', what);
      // RFC 6749 §5.2: error_description is printable ASCII without '"' and '\'.
      assert.match(res.body.error_description, /^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/, what);
      assert.equal(res.headers['cache-control'], 'no-store', what);
    }
  });

  it('the error names the field when one is at fault', async () => {
    const res = await token({ body: { device_code: 'x'.repeat(300) } });
    assert.match(res.body.error_description, /device_code/);
  });

  it('a well-formed request for an unknown code is still invalid_grant', async () => {
    const res = await token({
      form: { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: 'unknown' },
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error, 'invalid_grant');
  });
});
