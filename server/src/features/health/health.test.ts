import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

describe('operations endpoints', () => {
  it('200 /healthz and /readyz with the database checked', async () => {
    assert.deepEqual((await h.request({ method: 'GET', url: '/healthz' })).body, { status: 'ok' });
    const ready = await h.request({ method: 'GET', url: '/readyz' });
    assert.equal(ready.status, 200);
    assert.equal(ready.body.checks.database, 'ok');
  });

  it('200 /metrics in Prometheus text format with request durations by route', async () => {
    await h.request({ method: 'GET', url: '/healthz' });
    const res = await h.request({ method: 'GET', url: '/metrics' });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /text\/plain/);
    assert.match(
      res.text,
      /gatehouse_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} \d+/,
    );
  });

  it('200 /openapi.json documents every route with its security, and /docs serves the UI', async () => {
    const spec = (await h.request({ method: 'GET', url: '/openapi.json' })).body;
    assert.equal(spec.openapi, '3.1.0');
    for (const path of [
      '/api/auth/register',
      '/api/auth/login',
      '/api/keys/verify',
      '/api/admin/tenants',
      '/.well-known/jwks.json',
    ]) {
      assert.ok(spec.paths[path], `${path} missing`);
    }
    assert.deepEqual(spec.paths['/api/auth/me'].get.security, [{ bearer: [] }]);
    assert.equal(spec.paths['/api/auth/login'].post.security, undefined);
    const docs = await h.request({ method: 'GET', url: '/docs/' });
    assert.equal(docs.status, 200);
    assert.match(docs.text, /swagger/i);
  });

  it('404 not_found in the standard error shape for an unknown route', async () => {
    const res = await h.request({ method: 'GET', url: '/api/nope?x=1' });
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'not_found');
    assert.match(res.body.error.requestId, /^req_/);
    assert.equal(res.headers['x-request-id'], res.body.error.requestId);
  });

  it('400 invalid_request for malformed JSON, naming no internals', async () => {
    const res = await h.request({
      method: 'POST',
      url: '/api/auth/login',
      headers: { 'content-type': 'application/json' },
      body: '{"email":',
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'invalid_request');
  });
});
