import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';
import { startManagementServer } from '../../http/metrics.js';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
let h: Harness;
before(async () => {
  h = await createHarness({ METRICS_TOKEN });
});
after(() => h.close());

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as import('node:net').AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('operations endpoints', () => {
  it('200 /healthz and /readyz with the database checked', async () => {
    assert.deepEqual((await h.request({ method: 'GET', url: '/healthz' })).body, { status: 'ok' });
    const ready = await h.request({ method: 'GET', url: '/readyz' });
    assert.equal(ready.status, 200);
    assert.equal(ready.body.checks.database, 'ok');
  });

  it('200 /metrics in Prometheus text format with request durations by route, with the METRICS_TOKEN', async () => {
    await h.request({ method: 'GET', url: '/healthz' });
    const res = await h.request({ method: 'GET', url: '/metrics', token: METRICS_TOKEN });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /text\/plain/);
    assert.match(
      res.text,
      /gatehouse_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} \d+/,
    );
  });

  it('401 /metrics without the METRICS_TOKEN, or with another bearer token', async () => {
    const user = await (await h.tenant()).user();
    for (const token of [undefined, user.accessToken, `${METRICS_TOKEN}x`]) {
      const res = await h.request({ method: 'GET', url: '/metrics', token });
      assert.equal(res.status, 401);
      assert.equal(res.body.error.code, 'unauthorized');
      assert.doesNotMatch(res.text, /gatehouse_http/);
    }
  });

  it('404 /metrics when neither METRICS_TOKEN nor METRICS_PORT is set', async () => {
    const plain = await createHarness({}, { operator: false });
    try {
      const res = await plain.request({ method: 'GET', url: '/metrics' });
      assert.equal(res.status, 404);
      assert.equal(res.body.error.code, 'not_found');
    } finally {
      await plain.close();
    }
  });

  it('200 /metrics, /healthz and /readyz on METRICS_PORT without a token, 404 for the rest; the main port answers 404', async () => {
    const port = await freePort();
    const apart = await createHarness({ METRICS_PORT: String(port), HOST: '127.0.0.1' }, { operator: false });
    const management = await startManagementServer(apart.app, apart.deps, port);
    try {
      assert.equal((await apart.request({ method: 'GET', url: '/metrics' })).status, 404);
      await apart.request({ method: 'GET', url: '/healthz' });
      const metrics = await fetch(`${management.url}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(
        await metrics.text(),
        /gatehouse_http_request_duration_seconds_count\{method="GET",route="\/healthz"/,
      );
      const ready = await fetch(`${management.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(((await ready.json()) as { checks: { database: string } }).checks.database, 'ok');
      assert.equal((await fetch(`${management.url}/healthz`)).status, 200);
      assert.equal((await fetch(`${management.url}/api/auth/me`)).status, 404);
    } finally {
      await management.close();
      await apart.close();
    }
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
