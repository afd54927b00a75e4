import { base64url, createRemoteJWKSet, customFetch, type JWTPayload, jwtVerify } from 'jose';
import { LRUCache } from 'lru-cache';
import { AuthenticationError, GatehouseError } from './errors.js';

export { AuthenticationError, GatehouseError } from './errors.js';

/** Who called the app's backend, as Gatehouse vouches for it. */
export interface GatehousePrincipal {
  userId: string;
  /** The caller's tenant: always the verifier's (callers of other tenants are refused). */
  tenantId: string;
  via: 'access_token' | 'api_key';
  sessionId: string | null;
  apiKeyId: string | null;
  scopes: string[];
  /** Epoch ms when the credential stops being good (null: no expiry). */
  expiresAt: number | null;
}

export interface VerifierOptions {
  /** Gatehouse's public URL: its tokens' issuer, and where its JWKS and verify endpoint are. */
  baseUrl: string;
  /**
   * A tenant service key (gsk_…). It verifies API keys (POST /api/keys/verify), and it pins the
   * verifier to its tenant: only that tenant's access tokens and keys are accepted. The tenant is
   * learned from Gatehouse once, on first use.
   */
  serviceKey?: string;
  /** The tokens' issuer: Gatehouse's PUBLIC_URL (default: `baseUrl`, when the app reaches it at that URL). */
  issuer?: string;
  /**
   * Accept only this tenant's callers (access tokens' `aud`). Needed without a `serviceKey`; with
   * one, optional, and it must be the service key's tenant.
   */
  tenantId?: string;
  /** How long a verified API key is trusted before asking again (default 10 s; 0: every time). */
  apiKeyCacheMs?: number;
  fetch?: typeof fetch;
}

/** What POST /api/keys/verify answers (the fields the verifier reads). */
interface VerifyAnswer {
  valid: boolean;
  code: string;
  key_id: string | null;
  user_id: string | null;
  tenant_id: string;
  scopes: string[];
  expires_at: string | null;
}

/**
 * A key no tenant has (malformed, so Gatehouse answers NOT_FOUND without a lookup): asking to verify
 * it tells a service key's tenant, which every verify answer names.
 */
const TENANT_PROBE = 'gk_tenant_probe';

/**
 * The counterpart of seed 002's `Depends(get_current_user)` for an app's own backend: verifies
 * Gatehouse access tokens offline against its JWKS (fetched once, cached, and fetched again when a
 * token names a key it has not seen: key rotation), and API keys through the verify endpoint,
 * with a short cache.
 *
 * It accepts one tenant's callers only, as a Clerk or Unkey verifier serves the instance or
 * workspace of its secret key: the tenant of `serviceKey`, or `tenantId`. One Gatehouse serves many
 * tenants with one JWKS, so an access token of another tenant is well signed; without the pin it
 * would pass.
 */
export function createVerifier(options: VerifierOptions) {
  if (!options.tenantId && !options.serviceKey) {
    throw new TypeError(
      'createVerifier needs serviceKey (it then accepts only its tenant) or tenantId: ' +
        'one Gatehouse signs the access tokens of every tenant with the same keys',
    );
  }
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const jwks = createRemoteJWKSet(new URL(`${baseUrl}/.well-known/jwks.json`), {
    cacheMaxAge: 10 * 60_000,
    cooldownDuration: 30_000,
    [customFetch]: (url, init) => fetchImpl(url, init as RequestInit),
  });
  const ttl = options.apiKeyCacheMs ?? 10_000;
  const keys = new LRUCache<string, GatehousePrincipal | GatehouseError>({ max: 10_000, ttl: Math.max(ttl, 1) });

  /** The verifier's tenant: `tenantId`, or the service key's, learned from the first verify answer. */
  let learned: Promise<string> | undefined = options.tenantId ? Promise.resolve(options.tenantId) : undefined;

  async function askVerify(key: string): Promise<VerifyAnswer> {
    if (!options.serviceKey) throw new Error('createVerifier needs serviceKey to verify API keys');
    const response = await fetchImpl(`${baseUrl}/api/keys/verify`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${options.serviceKey}` },
      body: JSON.stringify({ key }),
    });
    if (response.status === 401 || response.status === 403) {
      // The backend's own configuration is wrong, not the caller's credential: not a 401 for the caller.
      const refused = await GatehouseError.fromResponse(response);
      throw new GatehouseError(
        `Gatehouse refused the verifier's service key: ${refused.message}`,
        'service_key_refused',
        500,
        refused.requestId,
      );
    }
    if (!response.ok) throw await GatehouseError.fromResponse(response);
    const answer = (await response.json()) as VerifyAnswer;
    if (typeof answer.tenant_id !== 'string') {
      throw new GatehouseError('Gatehouse did not name the tenant of the service key', 'tenant_unknown', 502);
    }
    if (options.tenantId && answer.tenant_id !== options.tenantId) {
      throw new GatehouseError(
        `The service key belongs to tenant ${answer.tenant_id}, not to tenantId ${options.tenantId}`,
        'tenant_mismatch',
        500,
      );
    }
    learned ??= Promise.resolve(answer.tenant_id);
    return answer;
  }

  /** The verifier's tenant (asking Gatehouse once when only `serviceKey` was given; again after a failure). */
  function tenant(): Promise<string> {
    learned ??= askVerify(TENANT_PROBE).then(
      (answer) => answer.tenant_id,
      (error: unknown) => {
        learned = undefined;
        throw error;
      },
    );
    return learned;
  }

  async function verifyAccessToken(token: string): Promise<GatehousePrincipal> {
    const audience = await tenant();
    let payload: JWTPayload & { tid?: string; sid?: string };
    if (!hasCanonicalLowS(token)) {
      throw new AuthenticationError(
        'The access token is not valid: its signature is not in low-S form',
        'invalid_token',
        401,
      );
    }
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer: (options.issuer ?? baseUrl).replace(/\/+$/, ''),
        algorithms: ['ES256'],
        audience,
      }));
    } catch (error) {
      throw new AuthenticationError(`The access token is not valid: ${(error as Error).message}`, 'invalid_token', 401);
    }
    if (!payload.sub || payload.tid !== audience)
      throw new AuthenticationError('The access token lacks sub, or is of another tenant', 'invalid_token', 401);
    return {
      userId: payload.sub,
      tenantId: audience,
      via: 'access_token',
      sessionId: payload.sid ?? null,
      apiKeyId: null,
      scopes: [],
      expiresAt: payload.exp ? payload.exp * 1000 : null,
    };
  }

  async function verifyApiKey(key: string): Promise<GatehousePrincipal> {
    const cached = ttl > 0 ? keys.get(key) : undefined;
    if (cached instanceof GatehouseError) throw cached;
    if (cached) return cached;
    // The service key only finds keys of its own tenant (another tenant's is NOT_FOUND).
    const answer = await askVerify(key);
    const result =
      answer.valid && answer.user_id
        ? {
            userId: answer.user_id,
            tenantId: answer.tenant_id,
            via: 'api_key' as const,
            sessionId: null,
            apiKeyId: answer.key_id,
            scopes: answer.scopes,
            expiresAt: answer.expires_at ? Date.parse(answer.expires_at) : null,
          }
        : new AuthenticationError(`The API key is not valid (${answer.code})`, answer.code.toLowerCase(), 401);
    if (ttl > 0) keys.set(key, result);
    if (result instanceof GatehouseError) throw result;
    return result;
  }

  /** From an Authorization header: "Bearer gk_…" is an API key, any other bearer token an access token. */
  async function verify(authorization: string | undefined): Promise<GatehousePrincipal> {
    const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
    if (!match)
      throw new AuthenticationError('Send Authorization: Bearer <access token or API key>', 'unauthorized', 401);
    return match[1].startsWith('gk_') ? verifyApiKey(match[1]) : verifyAccessToken(match[1]);
  }

  return { verify, verifyAccessToken, verifyApiKey, tenant };
}

export type Verifier = ReturnType<typeof createVerifier>;

function problem(error: unknown) {
  const known = error instanceof GatehouseError;
  return {
    status: known ? error.status : 500,
    body: {
      error: {
        code: known ? error.code : 'internal_error',
        message: known ? error.message : 'Could not verify the caller',
      },
    },
  };
}

/**
 * Fastify: `app.addHook('preHandler', gatehouseFastify(verifier))` puts the caller on
 * `request.gatehouse`, or answers 401 with Gatehouse's error body.
 */
export function gatehouseFastify(verifier: Verifier) {
  return async (
    request: { headers: Record<string, string | string[] | undefined>; gatehouse?: GatehousePrincipal },
    reply: { code(status: number): { send(body: unknown): unknown } },
  ) => {
    try {
      request.gatehouse = await verifier.verify(request.headers.authorization as string | undefined);
    } catch (error) {
      const { status, body } = problem(error);
      return reply.code(status).send(body);
    }
  };
}

/** Express: `app.use(gatehouseExpress(verifier))` puts the caller on `req.gatehouse`, or answers 401. */
export function gatehouseExpress(verifier: Verifier) {
  return (
    req: { headers: Record<string, string | string[] | undefined>; gatehouse?: GatehousePrincipal },
    res: { status(code: number): { json(body: unknown): unknown } },
    next: (error?: unknown) => void,
  ) => {
    verifier.verify(req.headers.authorization as string | undefined).then(
      (principal) => {
        req.gatehouse = principal;
        next();
      },
      (error: unknown) => {
        const { status, body } = problem(error);
        res.status(status).json(body);
      },
    );
  };
}

/** Half the order of P-256 (SEC 2 §2.4.2), the group of ES256. */
const P256_HALF_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n >> 1n;

/**
 * ECDSA signatures are malleable: for a valid (r, s), (r, n − s) verifies too. Gatehouse signs
 * only the low-S form and its own verifier accepts only that, in canonical base64url; so does this
 * one, so a token has one valid encoding here as on the server (caches and denylists keyed by it).
 */
function hasCanonicalLowS(token: string): boolean {
  const encoded = token.split('.')[2] ?? '';
  let signature: Uint8Array;
  try {
    signature = base64url.decode(encoded);
  } catch {
    return false;
  }
  if (signature.length !== 64 || base64url.encode(signature) !== encoded) return false;
  let s = 0n;
  for (const byte of signature.subarray(32)) s = (s << 8n) | BigInt(byte);
  return s <= P256_HALF_ORDER;
}
