import { createPrivateKey, type KeyObject, sign } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type JWK, type JWTPayload, jwtVerify } from 'jose';
import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { Database } from '../../db/schema.js';
import { isLowS, toLowS } from '../../lib/ecdsa.js';
import type { Ids } from '../../lib/ids.js';
import type { MasterKey } from '../../lib/master-key.js';
import {
  insertActiveSigningKey,
  insertFirstSigningKey,
  listSigningKeys,
  type SigningKeyRow,
} from './signing-keys.repo.js';

const ALG = 'ES256';
/** How long after a rotation every instance has picked up the new key (refresh every 60 s, plus margin). */
const KEY_PICKUP_MS = 2 * 60_000;

/** Claims of a Gatehouse access token (issue 2: iss, aud, sub, tid, sid, iat, exp, jti). */
export interface AccessClaims {
  sub: string;
  tid: string;
  sid: string;
  exp: number;
  jti: string;
}

interface LoadedKey {
  kid: string;
  publicJwk: JWK;
  privateKey: KeyObject;
  /** base64url of the protected header, the same for every token this key signs. */
  header: string;
  publicKey: CryptoKey;
  createdAt: number;
  retiredAt: number | null;
}

export interface KeyringDeps {
  db: Kysely<Database>;
  masterKey: MasterKey;
  ids: Ids;
  now: () => number;
  issuer: string;
  /** Retired keys stay published this long: no token they signed can outlive it. */
  maxAccessTtlMs: number;
}

export interface Keyring {
  /** Loads keys from the database, creating the first one on an empty database. */
  load(): Promise<void>;
  signAccessToken(claims: { sub: string; tid: string; sid: string; jti: string }, ttlMs: number): Promise<string>;
  /** Verified claims, or null for any token we did not issue or that is no longer valid. */
  verifyAccessToken(token: string): Promise<AccessClaims | null>;
  jwks(): { keys: JWK[] };
  /** Adds a new active key; the old one stays in the JWKS until its tokens have expired. */
  rotate(): Promise<string>;
  /** Re-reads the keys, picking up another instance's rotation (called every minute). */
  refresh(): Promise<void>;
}

/**
 * ES256 signing keys shared by every instance through the database, private halves sealed under
 * the master key. Verified tokens are cached until they expire, so a hot bearer token costs a
 * map lookup instead of an ECDSA verification (issue 2's benchmark expects this).
 */
export function createKeyring(deps: KeyringDeps): Keyring {
  let keys = new Map<string, LoadedKey>();
  let active: LoadedKey | undefined;
  let lastReload = 0;
  const verified = new LRUCache<string, AccessClaims>({ max: 20_000 });

  const aad = (kid: string) => `signing_key:${kid}`;

  async function loadRow(row: SigningKeyRow): Promise<LoadedKey> {
    const publicJwk = JSON.parse(row.public_jwk) as JWK;
    const privateJwk = JSON.parse(deps.masterKey.open(row.private_sealed, aad(row.id)).toString('utf8')) as JWK;
    return {
      kid: row.id,
      publicJwk,
      privateKey: createPrivateKey({ key: privateJwk as import('node:crypto').JsonWebKey, format: 'jwk' }),
      header: base64url({ alg: ALG, kid: row.id, typ: 'at+jwt' }),
      publicKey: (await importJWK(publicJwk, ALG)) as CryptoKey,
      createdAt: row.created_at,
      retiredAt: row.retired_at,
    };
  }

  async function reload(): Promise<void> {
    const rows = await listSigningKeys(deps.db);
    const next = new Map<string, LoadedKey>();
    for (const row of rows) {
      const known = keys.get(row.id);
      // Keep the decrypted key material, but always take the retirement time from the database.
      next.set(row.id, known ? { ...known, retiredAt: row.retired_at } : await loadRow(row));
    }
    keys = next;
    active = [...next.values()].filter((k) => k.retiredAt === null).at(-1);
    lastReload = deps.now();
  }

  /** A new key pair, its private half sealed under the master key. */
  async function newKeyRow(): Promise<SigningKeyRow> {
    const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
    const kid = deps.ids.next('sgk');
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: ALG, use: 'sig' };
    const privateJwk = await exportJWK(privateKey);
    return {
      id: kid,
      alg: ALG,
      public_jwk: JSON.stringify(publicJwk),
      private_sealed: deps.masterKey.seal(JSON.stringify(privateJwk), aad(kid)),
      created_at: deps.now(),
      retired_at: null,
    };
  }

  /** Makes a new key the active one; when another rotation won the race, its key is the one used. */
  async function rotate(): Promise<string> {
    const row = await newKeyRow();
    await insertActiveSigningKey(deps.db, row);
    await reload();
    if (!active) throw new Error('No active signing key after rotation');
    return active.kid;
  }

  // Other instances may sign with a retired key until their next refresh (every minute), so a
  // retired key stays published for the longest token lifetime plus that pick-up time.
  const isPublished = (key: LoadedKey) =>
    key.retiredAt === null || key.retiredAt + deps.maxAccessTtlMs + KEY_PICKUP_MS > deps.now();

  return {
    async load() {
      await reload();
      if (active) return;
      // Several instances may start at once on an empty database: one key wins, all load it.
      await insertFirstSigningKey(deps.db, await newKeyRow());
      await reload();
      if (!active) throw new Error('No active signing key');
    },
    rotate,
    refresh: reload,
    async signAccessToken(claims, ttlMs) {
      // No database work here: callers sign inside their transaction, and on SQLite a second
      // query from outside it would wait for it forever. `refresh()` runs on a timer instead.
      if (!active) throw new Error('No active signing key');
      const iat = Math.floor(deps.now() / 1000);
      const payload = base64url({
        iss: deps.issuer,
        aud: claims.tid,
        sub: claims.sub,
        tid: claims.tid,
        sid: claims.sid,
        jti: claims.jti,
        iat,
        exp: iat + Math.floor(ttlMs / 1000),
      });
      // RFC 7515 §5.1 with ES256 (RFC 7518 §3.4: the raw r||s signature, hence ieee-p1363).
      // node:crypto signs synchronously in ~30 µs; WebCrypto cost several times that per sign-in
      // on the thread pool that password hashing needs. Verification stays with jose.
      const input = `${active.header}.${payload}`;
      // OpenSSL leaves half of its signatures high-S; only the low-S form is accepted (lib/ecdsa.ts).
      const signature = toLowS(
        sign('sha256', Buffer.from(input), { key: active.privateKey, dsaEncoding: 'ieee-p1363' }),
      );
      return `${input}.${signature.toString('base64url')}`;
    },
    async verifyAccessToken(token) {
      const cached = verified.get(token);
      if (cached) return cached.exp * 1000 > deps.now() ? cached : null;
      // The high-S twin (r, n − s) of a valid signature verifies too, and so does a signature
      // written with other unused trailing bits: only the one canonical text passes (lib/ecdsa.ts).
      const signatureText = token.slice(token.lastIndexOf('.') + 1);
      const signature = Buffer.from(signatureText, 'base64url');
      if (!isLowS(signature) || signature.toString('base64url') !== signatureText) return null;
      try {
        const { payload } = await jwtVerify(
          token,
          async (header) => {
            let key = header.kid ? keys.get(header.kid) : undefined;
            if (!key && header.kid && deps.now() - lastReload > 5_000) {
              await reload();
              key = keys.get(header.kid);
            }
            if (!key || !isPublished(key)) throw new Error('unknown key');
            return key.publicKey;
          },
          // Pinned algorithm and issuer (DESIGN security rules); audience is checked against tid below.
          { algorithms: [ALG], issuer: deps.issuer, currentDate: new Date(deps.now()), typ: 'at+jwt' },
        );
        const claims = toClaims(payload);
        if (!claims) return null;
        verified.set(token, claims, { ttl: Math.max(1, claims.exp * 1000 - deps.now()) });
        return claims;
      } catch {
        return null;
      }
    },
    jwks: () => ({ keys: [...keys.values()].filter(isPublished).map((k) => k.publicJwk) }),
  };
}

function base64url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function toClaims(payload: JWTPayload): AccessClaims | null {
  const { sub, tid, sid, exp, jti, aud } = payload as JWTPayload & { tid?: unknown; sid?: unknown };
  if (typeof sub !== 'string' || typeof tid !== 'string' || typeof sid !== 'string') return null;
  if (typeof exp !== 'number' || typeof jti !== 'string' || aud !== tid) return null;
  return { sub, tid, sid, exp, jti };
}
