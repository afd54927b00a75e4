import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  generateKeyPair,
  type JWK,
  jwtVerify,
  SignJWT,
} from 'jose';
import pg from 'pg';
import { createHarness, type Harness } from '../../../test/harness.js';
import { loadConfig } from '../../config.js';
import { migrateToLatest } from '../../db/index.js';
import { closeDeps, createDeps, type Deps } from '../../deps.js';
import { createLogger } from '../../logger.js';

const ISSUER = 'http://gatehouse.test';

let h: Harness;
let jwksUrl: URL;
before(async () => {
  h = await createHarness();
  // A consuming app fetches the JWKS over HTTP, so this file talks to a real socket.
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = h.app.server.address() as AddressInfo;
  jwksUrl = new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`);
});
after(() => h.close());

const me = (token: string) => h.request({ method: 'GET', url: '/api/auth/me', token });

/** Verifies a token the way a consuming app would: remote JWKS, pinned issuer, audience and algorithm. */
function verifyOffline(token: string, audience: string, jwks = createRemoteJWKSet(jwksUrl)) {
  return jwtVerify(token, jwks, { issuer: ISSUER, audience, algorithms: ['ES256'] });
}

async function fetchJwks(): Promise<{ keys: JWK[] }> {
  const res = await fetch(jwksUrl);
  assert.equal(res.status, 200);
  return (await res.json()) as { keys: JWK[] };
}

describe('GET /.well-known/jwks.json', () => {
  it('200 publishes only public P-256 keys with kid, alg ES256 and use sig, cacheable for 5 minutes', async () => {
    const res = await fetch(jwksUrl);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=300');
    const { keys } = (await res.json()) as { keys: JWK[] };
    assert.ok(keys.length >= 1);
    for (const key of keys) {
      assert.equal(key.kty, 'EC');
      assert.equal(key.crv, 'P-256');
      assert.equal(key.alg, 'ES256');
      assert.equal(key.use, 'sig');
      assert.match(key.kid ?? '', /^sgk_/);
      assert.equal(key.d, undefined, 'no private part is published');
    }
  });
});

describe('access tokens, verified offline', () => {
  it('verify through the remote JWKS with pinned issuer, audience = tenant id and ES256; claims are complete', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const { payload, protectedHeader } = await verifyOffline(user.accessToken, t.id);
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.typ, 'at+jwt');
    assert.ok(
      (await fetchJwks()).keys.some((k) => k.kid === protectedHeader.kid),
      'kid is in the JWKS',
    );
    assert.equal(payload.iss, ISSUER);
    assert.equal(payload.aud, t.id);
    assert.equal(payload.sub, user.id);
    assert.equal(payload.tid, t.id);
    assert.match(String(payload.sid), /^ses_/);
    assert.equal(typeof payload.jti, 'string');
    assert.ok((payload.jti ?? '').length > 0);
    assert.equal(typeof payload.iat, 'number');
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 900);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs((payload.iat ?? 0) - now) <= 5, 'iat is now');
  });

  it('every token gets its own jti', async () => {
    const t = await h.tenant();
    const a = await t.user();
    const b = await t.user();
    assert.notEqual(decodeJwt(a.accessToken).jti, decodeJwt(b.accessToken).jti);
  });

  it('fail offline with another tenant’s id as audience', async () => {
    const t1 = await h.tenant();
    const t2 = await h.tenant();
    const user = await t1.user();
    await assert.rejects(verifyOffline(user.accessToken, t2.id), (error: { code?: string; claim?: string }) => {
      assert.equal(error.code, 'ERR_JWT_CLAIM_VALIDATION_FAILED');
      assert.equal(error.claim, 'aud');
      return true;
    });
  });

  it('fail offline with another issuer pinned', async () => {
    const t = await h.tenant();
    const user = await t.user();
    await assert.rejects(
      jwtVerify(user.accessToken, createRemoteJWKSet(jwksUrl), {
        issuer: 'http://evil.test',
        audience: t.id,
        algorithms: ['ES256'],
      }),
      { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'iss' },
    );
  });
});

describe('signing key rotation', () => {
  it('new tokens carry the new kid, the JWKS publishes both keys, and an old token still verifies offline and on /api/auth/me', async () => {
    const t = await h.tenant();
    const before = await t.user();
    // Not presented to the server before the rotation, so /api/auth/me below verifies it afresh
    // instead of answering from the verified-token cache.
    const oldKid = decodeProtectedHeader(before.accessToken).kid;
    assert.ok(oldKid);

    const newKid = await h.deps.keyring.rotate();
    assert.notEqual(newKid, oldKid);
    const afterRotation = await t.user();
    assert.equal(decodeProtectedHeader(afterRotation.accessToken).kid, newKid);

    const kids = (await fetchJwks()).keys.map((k) => k.kid);
    assert.ok(kids.includes(oldKid), 'the retired key stays published');
    assert.ok(kids.includes(newKid), 'the new key is published');

    // A consuming app that fetches the JWKS now accepts both generations.
    const jwks = createRemoteJWKSet(jwksUrl);
    assert.equal((await verifyOffline(before.accessToken, t.id, jwks)).payload.sub, before.id);
    assert.equal((await verifyOffline(afterRotation.accessToken, t.id, jwks)).payload.sub, afterRotation.id);

    const oldOnServer = await me(before.accessToken);
    assert.equal(oldOnServer.status, 200, oldOnServer.text);
    assert.equal(oldOnServer.body.id, before.id);
    assert.equal((await me(afterRotation.accessToken)).status, 200);
  });

  it('a retired key leaves the JWKS once no token it signed can still be valid (MAX_ACCESS_TOKEN_TTL)', async (ctx) => {
    // Regression: reload() once kept the in-memory retiredAt of keys it had already loaded, so a
    // retired key stayed published and trusted until a restart.
    const advance = h.clockFor(ctx);
    const retiring = await h.deps.keyring.rotate();
    await h.deps.keyring.rotate();
    const row = await h.deps.db.kysely
      .selectFrom('signing_keys')
      .select('retired_at')
      .where('id', '=', retiring)
      .executeTakeFirstOrThrow();
    assert.notEqual(row.retired_at, null, 'the database records the retirement');
    const kidsOnServer = async () =>
      ((await h.request({ method: 'GET', url: '/.well-known/jwks.json' })).body.keys as JWK[]).map((k) => k.kid);
    // 24 h (MAX_ACCESS_TOKEN_TTL) plus 2 min for other instances to stop signing with it.
    advance(24 * 3_600_000 + 60_000);
    assert.ok((await kidsOnServer()).includes(retiring), 'still published within the pick-up time');
    advance(2 * 60_000);
    assert.ok(!(await kidsOnServer()).includes(retiring), 'gone after 24 h and the pick-up time');
  });
});

describe('forged tokens', () => {
  it('401 on /api/auth/me for a token signed by a foreign ES256 key with the real kid and claims that look right', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const real = decodeJwt(user.accessToken);
    const realKid = decodeProtectedHeader(user.accessToken).kid;
    const { privateKey } = await generateKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const forge = (kid: string | undefined) =>
      new SignJWT({ tid: real.tid, sid: real.sid })
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
        .setIssuer(ISSUER)
        .setAudience(t.id)
        .setSubject(user.id)
        .setJti('forged-jti')
        .setIssuedAt(now)
        .setExpirationTime(now + 900)
        .sign(privateKey);

    for (const kid of [realKid, 'sgk_01forged0000000000000000', undefined]) {
      const forged = await forge(kid);
      const res = await me(forged);
      assert.equal(res.status, 401, `kid ${kid}: ${res.text}`);
      assert.equal(res.body.error.code, 'invalid_token');
      await assert.rejects(verifyOffline(forged, t.id), 'a consuming app rejects it too');
    }
    await assert.rejects(verifyOffline(await forge(realKid), t.id), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    assert.equal((await me(user.accessToken)).status, 200, 'the genuine token still works');
  });

  it('401 for an unsigned (alg none) copy of a real token', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const [, payload] = user.accessToken.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url');
    const res = await me(`${header}.${payload}.`);
    assert.equal(res.status, 401);
    assert.equal(res.body.error.code, 'invalid_token');
  });
});

describe('keyring reload', () => {
  it('a sign-in more than a minute after the keyring last loaded completes (no deadlock on SQLite)', async () => {
    // Regression: signing once reloaded keys from deps.db when they were a minute old, inside the
    // sign-in transaction; SQLite's single connection was held by that transaction, so the
    // reload waited for it forever. Keys now reload on a timer, never while signing.
    // Its own harness, because a deadlocked one cannot be used or closed afterwards.
    const own = await createHarness();
    const t = await own.tenant();
    await t.user();
    own.clock.advance(61_000);
    let watchdog: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      t.user().then(() => 'signed in'),
      // Not a sleep: a bound on how long a hang may take to be reported (a sign-in takes milliseconds).
      new Promise<string>((resolve) => {
        watchdog = setTimeout(() => resolve('no answer after 3s'), 3_000);
      }),
    ]);
    clearTimeout(watchdog);
    if (outcome === 'signed in') await own.close();
    assert.equal(outcome, 'signed in');
  });
});

describe('instances starting at once', {
  skip: !process.env.TEST_DATABASE_URL && 'PostgreSQL only (TEST_DATABASE_URL)',
}, () => {
  it('several instances starting together on an empty PostgreSQL database create one signing key and all sign with it', async () => {
    const url = process.env.TEST_DATABASE_URL as string;
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`create schema ${schema}`);
    const config = loadConfig({ NODE_ENV: 'test', PUBLIC_URL: ISSUER });
    const log = createLogger('silent');
    const masterKey = randomBytes(32);
    const instances: Deps[] = [];
    try {
      const start = async () => {
        const deps = await createDeps({
          config,
          log,
          masterKey,
          dbOptions: { dialect: 'postgres', connectionString: url, schema, max: 2 },
        });
        instances.push(deps);
        await migrateToLatest(deps.db);
        await deps.keyring.load();
        return deps;
      };
      const started = await Promise.all(Array.from({ length: 4 }, start));
      const { rows } = await admin.query(`select id, retired_at from ${schema}.signing_keys`);
      assert.equal(rows.length, 1, 'one key');
      const kids = await Promise.all(
        started.map(async (deps) => {
          const token = await deps.keyring.signAccessToken(
            { sub: 'usr_1', tid: 'ten_1', sid: 'ses_1', jti: 'j' },
            60_000,
          );
          return decodeProtectedHeader(token).kid;
        }),
      );
      assert.deepEqual(new Set(kids), new Set([rows[0].id]));
    } finally {
      for (const deps of instances) await closeDeps(deps);
      await admin.query(`drop schema ${schema} cascade`);
      await admin.end();
    }
  });
});
