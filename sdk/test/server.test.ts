import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { createHarness, type Harness, listen } from '../../server/test/harness.js';
import {
  AuthenticationError,
  createVerifier,
  GatehouseError,
  gatehouseExpress,
  gatehouseFastify,
} from '../src/server.js';

let h: Harness;
let baseUrl: string;
before(async () => {
  h = await createHarness();
  baseUrl = await listen(h.app);
});
after(() => h.close());

/** The harness serves at 127.0.0.1 but issues tokens as its PUBLIC_URL. */
const ISSUER = 'http://gatehouse.test';

function counting() {
  const counts = new Map<string, number>();
  const fetchImpl: typeof fetch = (input, init) => {
    const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    return fetch(input, init);
  };
  return { fetchImpl, count: (path: string) => counts.get(path) ?? 0 };
}

describe('@gatehouse/sdk/server verifier', () => {
  it('verifies access tokens offline against the JWKS (fetched once) and refuses tampered ones or other tenants', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const net = counting();
    const verifier = createVerifier({ baseUrl, issuer: ISSUER, tenantId: t.id, fetch: net.fetchImpl });
    const principal = await verifier.verifyAccessToken(user.accessToken);
    assert.equal(principal.userId, user.id);
    assert.equal(principal.tenantId, t.id);
    assert.equal(principal.via, 'access_token');
    await verifier.verify(`Bearer ${user.accessToken}`);
    assert.equal(net.count('/.well-known/jwks.json'), 1, 'the key set is cached');

    const [head, body, signature] = user.accessToken.split('.');
    const forged = `${head}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), sub: 'usr_other' })).toString('base64url')}.${signature}`;
    await assert.rejects(() => verifier.verifyAccessToken(forged), AuthenticationError);
    const stranger = await (await h.tenant()).user();
    await assert.rejects(() => verifier.verifyAccessToken(stranger.accessToken), AuthenticationError, 'another tenant');
    await assert.rejects(() => verifier.verify(undefined), AuthenticationError);

    // The high-S twin (r, n − s) of the real signature verifies under plain ECDSA; Gatehouse never issues it.
    const raw = Buffer.from(signature, 'base64url');
    const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
    const highS = (n - BigInt(`0x${raw.subarray(32).toString('hex')}`)).toString(16).padStart(64, '0');
    const twin = `${head}.${body}.${Buffer.concat([raw.subarray(0, 32), Buffer.from(highS, 'hex')]).toString('base64url')}`;
    await assert.rejects(() => verifier.verifyAccessToken(twin), /low-S/);
  });

  it('with only a service key, accepts its own tenant and refuses access tokens and API keys of another tenant', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const stranger = await (await h.tenant()).user();
    const net = counting();
    // As the README configures it: a service key, no tenantId.
    const verifier = createVerifier({
      baseUrl,
      issuer: ISSUER,
      serviceKey: await t.serviceKey(),
      fetch: net.fetchImpl,
    });
    await assert.rejects(
      () => verifier.verify(`Bearer ${stranger.accessToken}`),
      (error: unknown) => error instanceof AuthenticationError && error.status === 401,
      "another tenant's access token is refused",
    );
    await assert.rejects(
      () => verifier.verify(`Bearer ${stranger.apiKey}`),
      AuthenticationError,
      "another tenant's key",
    );
    const own = await verifier.verify(`Bearer ${user.accessToken}`);
    assert.deepEqual([own.userId, own.tenantId, own.via], [user.id, t.id, 'access_token']);
    const key = await verifier.verify(`Bearer ${user.apiKey}`);
    assert.deepEqual(
      [key.userId, key.tenantId, key.via],
      [user.id, t.id, 'api_key'],
      'API-key callers carry their tenant',
    );
    await verifier.verify(`Bearer ${user.accessToken}`);
    assert.equal(await verifier.tenant(), t.id);
    assert.equal(net.count('/api/keys/verify'), 3, "the tenant is asked once (then two keys' checks)");
  });

  it('refuses to be created without a tenant to pin, or with a tenantId its service key does not belong to', async () => {
    assert.throws(() => createVerifier({ baseUrl, issuer: ISSUER }), /needs serviceKey .* or tenantId/);
    const t = await h.tenant();
    const other = await h.tenant();
    const user = await t.user();
    const mismatched = createVerifier({
      baseUrl,
      issuer: ISSUER,
      serviceKey: await t.serviceKey(),
      tenantId: other.id,
    });
    await assert.rejects(
      () => mismatched.verifyApiKey(user.apiKey),
      (error: unknown) => error instanceof GatehouseError && error.code === 'tenant_mismatch' && error.status === 500,
    );
    const revoked = createVerifier({ baseUrl, issuer: ISSUER, serviceKey: 'gsk_not_a_key' });
    await assert.rejects(
      () => revoked.verify(`Bearer ${user.accessToken}`),
      (error: unknown) =>
        error instanceof GatehouseError &&
        !(error instanceof AuthenticationError) &&
        error.code === 'service_key_refused',
      "a refused service key is the backend's error (500), not the caller's 401",
    );
  });

  it('verifies API keys through the verify endpoint with a short cache', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const net = counting();
    const verifier = createVerifier({ baseUrl, serviceKey: await t.serviceKey(), fetch: net.fetchImpl });
    const principal = await verifier.verify(`Bearer ${user.apiKey}`);
    assert.deepEqual(
      [principal.userId, principal.apiKeyId, principal.via, principal.tenantId],
      [user.id, user.apiKeyId, 'api_key', t.id],
    );
    await verifier.verifyApiKey(user.apiKey);
    assert.equal(net.count('/api/keys/verify'), 1, 'the second check came from the cache');

    const uncached = createVerifier({ baseUrl, serviceKey: await t.serviceKey(), apiKeyCacheMs: 0 });
    await h.request({ method: 'DELETE', url: `/api/keys/${user.apiKeyId}`, token: user.accessToken });
    await assert.rejects(
      () => uncached.verifyApiKey(user.apiKey),
      (error: unknown) => error instanceof AuthenticationError && error.code === 'revoked',
    );
  });

  it('puts the caller on the request in Fastify and Express, and answers 401 otherwise', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const verifier = createVerifier({ baseUrl, issuer: ISSUER, serviceKey: await t.serviceKey() });

    const fastify = Fastify();
    fastify.addHook('preHandler', gatehouseFastify(verifier));
    fastify.get('/whoami', async (request) => ({
      user: (request as unknown as { gatehouse: { userId: string } }).gatehouse.userId,
    }));
    const ok = await fastify.inject({ url: '/whoami', headers: { authorization: `Bearer ${user.accessToken}` } });
    assert.deepEqual(ok.json(), { user: user.id });
    const denied = await fastify.inject({ url: '/whoami' });
    assert.equal(denied.statusCode, 401);
    assert.equal(denied.json().error.code, 'unauthorized');
    await fastify.close();

    const app = express();
    app.use(gatehouseExpress(verifier));
    app.get('/whoami', (req, res) => {
      res.json({ user: (req as unknown as { gatehouse: { userId: string } }).gatehouse.userId });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/whoami`;
    assert.deepEqual(await (await fetch(url, { headers: { authorization: `Bearer ${user.apiKey}` } })).json(), {
      user: user.id,
    });
    assert.equal((await fetch(url, { headers: { authorization: 'Bearer gk_nope' } })).status, 401);
    server.close();
  });
});
