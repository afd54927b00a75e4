import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createHarness, type Harness } from '../../../test/harness.js';

// ECDSA malleability: (r, n − s) verifies wherever (r, s) does. Gatehouse issues and accepts only
// the low-S form, written in canonical base64url, so each access token has exactly one text.

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

/** The order of P-256 (SEC 2 §2.4.2). */
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const toHex = (value: bigint) => value.toString(16).padStart(64, '0');

const signatureOf = (token: string) => Buffer.from(token.split('.')[2], 'base64url');
const sOf = (token: string) => BigInt(`0x${signatureOf(token).subarray(32).toString('hex')}`);

/** The same token with (r, n − s) as its signature. */
function highSTwin(token: string): string {
  const [header, payload] = token.split('.');
  const r = signatureOf(token).subarray(0, 32);
  const twin = Buffer.concat([r, Buffer.from(toHex(N - sOf(token)), 'hex')]);
  return `${header}.${payload}.${twin.toString('base64url')}`;
}

const me = (token: string) => h.request({ method: 'GET', url: '/api/auth/me', token });

describe('ES256 signature malleability', () => {
  it('every access token Gatehouse issues is low-S', async () => {
    const t = await h.tenant();
    for (let i = 0; i < 24; i++) {
      const user = await t.user();
      assert.ok(sOf(user.accessToken) <= N / 2n, `token ${i} is high-S`);
    }
  });

  it('401 for the high-S twin of a real token, which a plain ES256 verifier would accept', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const twin = highSTwin(user.accessToken);
    assert.notEqual(twin, user.accessToken);
    const jwks = createLocalJWKSet((await h.request({ method: 'GET', url: '/.well-known/jwks.json' })).body);
    await jwtVerify(twin, jwks, { algorithms: ['ES256'] }); // a genuine twin: it verifies
    const res = await me(twin);
    assert.equal(res.status, 401, res.text);
    assert.equal(res.body.error.code, 'invalid_token');
    assert.equal((await me(user.accessToken)).status, 200, 'the real token still works');
  });

  it('401 for the same signature written with other unused trailing bits', async () => {
    const t = await h.tenant();
    const user = await t.user();
    const [header, payload, signature] = user.accessToken.split('.');
    // 64 bytes are 86 base64url characters: the last one carries 2 bits and 4 unused ones.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(signature.at(-1) as string);
    const variant = `${signature.slice(0, -1)}${alphabet[last ^ 0b0001]}`;
    assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(signature, 'base64url'), 'same bytes');
    const res = await me(`${header}.${payload}.${variant}`);
    assert.equal(res.status, 401, res.text);
  });
});
