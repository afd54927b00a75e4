import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A user the fake provider signs in as. */
export interface FakeOidcUser {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
}

export interface FakeOidc {
  /** `http://127.0.0.1:<port>` (no trailing slash), as in discovery and in the `iss` of tokens. */
  issuer: string;
  /**
   * Registers (or replaces) a confidential client: `client_secret_basic` and `client_secret_post` are
   * both accepted, grant types `authorization_code` + `refresh_token`, response type `code`, the given
   * redirect URIs (http and any host allowed). PKCE is optional, only S256, and enforced at the token
   * endpoint when the authorization request carried a `code_challenge`.
   */
  client(c: { clientId: string; clientSecret: string; redirectUris: string[] }): void;
  /**
   * The user the following logins sign in as (sticky until called again; every `authorize()` starts
   * a fresh browser session, so it always logs in again). Default: sub `user-1`, email
   * `user1@example.com`, email_verified true, name `User One`.
   */
  nextUser(u: FakeOidcUser): void;
  /**
   * Follows an authorization URL as a browser would (GET, redirects within the provider, login and
   * consent completed automatically, cookies kept) until the provider redirects elsewhere, i.e. to
   * the client's redirect URI; returns that URL (with `code`, `state` and `iss`, or `error`) without
   * requesting it. Throws if the provider answers with a page instead (unknown client, bad
   * redirect_uri, ...).
   */
  authorize(authorizationUrl: string): Promise<URL>;
  /** Requests received by the token endpoint per grant type (counted when answered, failed ones too), and by the revocation endpoint. */
  counts: { authorization_code: number; refresh_token: number; revocation: number };
  /** Token values sent to the revocation endpoint, in order. */
  revoked: string[];
  /**
   * Makes the next `times` (default 1) refresh_token grants fail before the refresh token is looked
   * at (it stays valid): `invalid_grant` answers 400 `{"error":"invalid_grant"}`, `server_error`
   * answers 500 `{"error":"server_error"}`.
   */
  failRefresh(kind: 'invalid_grant' | 'server_error', times?: number): void;
  /** Delay (ms) before every token endpoint request is processed (default 0). */
  tokenDelayMs: number;
  /** Access token lifetime in seconds for tokens issued from now on (default 60). */
  accessTokenTtl: number;
  /**
   * Whether a refresh_token grant rotates the refresh token (default true): the response carries a new
   * refresh token and the old one is consumed; presenting a consumed one again answers invalid_grant
   * and revokes the whole grant (all its tokens), as oidc-provider does. When false, the same refresh
   * token is returned again and stays usable.
   */
  rotateRefreshTokens: boolean;
  close(): Promise<void>;
}

export interface FakeOidcOptions {
  /** Scopes accepted besides `openid email profile offline_access` (they end up in the token response's scope). */
  extraScopes?: string[];
}

// ---------------------------------------------------------------------------------------------
// The parts of oidc-provider used here (it ships no types; @types/oidc-provider is not installed).

interface OidcCtx {
  method: string;
  path: string;
  oidc?: {
    route?: string;
    params?: Record<string, unknown>;
    body?: Record<string, unknown>;
  };
}

interface OidcClient {
  grantTypeAllowed(grantType: string): boolean;
}

interface OidcGrant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  save(): Promise<string>;
}

interface OidcInteraction {
  uid: string;
  prompt: { name: string; details: { missingOIDCScope?: string[]; missingOIDCClaims?: string[] } };
  params: Record<string, unknown> & { client_id: string };
  grantId?: string;
  session?: { accountId?: string };
}

interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  use(middleware: (ctx: OidcCtx, next: () => Promise<void>) => Promise<void>): void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<OidcInteraction>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    options?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  Grant: {
    new (init: { accountId: string; clientId: string }): OidcGrant;
    find(id: string): Promise<OidcGrant | undefined>;
  };
}

interface OidcProviderClass {
  new (issuer: string, configuration: Record<string, unknown>): OidcProvider;
  /** The Koa context of the request being handled (AsyncLocalStorage), if any. */
  readonly ctx: OidcCtx | undefined;
}

let providerClass: Promise<OidcProviderClass> | undefined;

/**
 * Imports oidc-provider once. On Node < 22 its entry point prints an "Unsupported runtime" warning;
 * that one line is swallowed (it works on Node 20 for what is used here).
 */
function loadProvider(): Promise<OidcProviderClass> {
  providerClass ??= (async () => {
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('oidc-provider WARNING: Unsupported runtime')) return;
      warn(...args);
    };
    try {
      const specifier: string = 'oidc-provider';
      const module = (await import(specifier)) as { Provider: OidcProviderClass };
      return module.Provider;
    } finally {
      console.warn = warn;
    }
  })();
  return providerClass;
}

let signingKey: JsonWebKey | undefined;

/** One RSA key per process (RS256 ID tokens), so each provider start does not pay for key generation. */
function rsaKey(): JsonWebKey {
  signingKey ??= {
    ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
    kid: 'fake-oidc-rs256',
    use: 'sig',
    alg: 'RS256',
  };
  return signingKey;
}

// ---------------------------------------------------------------------------------------------
// Storage: an in-memory adapter per provider (oidc-provider's own one prints a warning).

type Payload = Record<string, unknown> & { grantId?: string; uid?: string; userCode?: string; consumed?: number };

interface Store {
  entries: Map<string, { payload: Payload; expiresAt: number }>;
  grants: Map<string, Set<string>>;
  sessionUids: Map<string, string>;
  userCodes: Map<string, string>;
  clients: Map<string, Payload>;
}

function createAdapter(store: Store, beforeFind: (model: string) => boolean) {
  return class FakeOidcAdapter {
    constructor(private readonly model: string) {}

    private key(id: string): string {
      return `${this.model}:${id}`;
    }

    async upsert(id: string, payload: Payload, expiresIn?: number): Promise<void> {
      const key = this.key(id);
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
      store.entries.set(key, { payload, expiresAt });
      if (payload.grantId) {
        const members = store.grants.get(payload.grantId) ?? new Set<string>();
        members.add(key);
        store.grants.set(payload.grantId, members);
      }
      if (this.model === 'Session' && typeof payload.uid === 'string') store.sessionUids.set(payload.uid, id);
      if (typeof payload.userCode === 'string') store.userCodes.set(payload.userCode, id);
    }

    async find(id: string): Promise<Payload | undefined> {
      if (!beforeFind(this.model)) return undefined;
      if (this.model === 'Client') return store.clients.get(id);
      const key = this.key(id);
      const entry = store.entries.get(key);
      if (!entry) return undefined;
      if (entry.expiresAt <= Date.now()) {
        store.entries.delete(key);
        return undefined;
      }
      return entry.payload;
    }

    async findByUid(uid: string): Promise<Payload | undefined> {
      const id = store.sessionUids.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode: string): Promise<Payload | undefined> {
      const id = store.userCodes.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id: string): Promise<void> {
      const entry = store.entries.get(this.key(id));
      if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id: string): Promise<void> {
      store.entries.delete(this.key(id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      for (const key of store.grants.get(grantId) ?? []) store.entries.delete(key);
      store.grants.delete(grantId);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// A tiny cookie jar for authorize() (name + path; no domains: everything goes to the issuer).

class CookieJar {
  private readonly cookies = new Map<string, { name: string; value: string; path: string }>();

  store(setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair = '', ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let expired = false;
      for (const attribute of attributes) {
        const [rawKey = '', ...rest] = attribute.split('=');
        const key = rawKey.trim().toLowerCase();
        const attributeValue = rest.join('=').trim();
        if (key === 'path' && attributeValue.startsWith('/')) path = attributeValue;
        if (key === 'expires' && Date.parse(attributeValue) <= Date.now()) expired = true;
        if (key === 'max-age' && Number(attributeValue) <= 0) expired = true;
      }
      const id = `${name};${path}`;
      if (expired || value === '') this.cookies.delete(id);
      else this.cookies.set(id, { name, value, path });
    }
  }

  header(url: URL): string | undefined {
    const matching = [...this.cookies.values()].filter(
      ({ path }) =>
        url.pathname === path ||
        (url.pathname.startsWith(path) && (path.endsWith('/') || url.pathname.charAt(path.length) === '/')),
    );
    // Longer paths first, as browsers do.
    matching.sort((a, b) => b.path.length - a.path.length);
    return matching.length > 0 ? matching.map(({ name, value }) => `${name}=${value}`).join('; ') : undefined;
  }
}

// ---------------------------------------------------------------------------------------------

const DEFAULT_USER: FakeOidcUser = {
  sub: 'user-1',
  email: 'user1@example.com',
  email_verified: true,
  name: 'User One',
};
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A real OpenID Connect provider (oidc-provider) on loopback, for the tests of Gatehouse's OAuth
 * features: discovery, authorization (login and consent done programmatically), token endpoint
 * with authorization_code and refresh_token grants (refresh tokens always issued), revocation,
 * userinfo, jwks. Knobs to count, delay and fail token requests.
 */
export async function startFakeOidc(options: FakeOidcOptions = {}): Promise<FakeOidc> {
  const Provider = await loadProvider();
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const store: Store = {
    entries: new Map(),
    grants: new Map(),
    sessionUids: new Map(),
    userCodes: new Map(),
    clients: new Map(),
  };
  const accounts = new Map<string, FakeOidcUser>();
  const refreshFailures: ('invalid_grant' | 'server_error')[] = [];
  let currentUser: FakeOidcUser = { ...DEFAULT_USER };

  /** Called before every adapter lookup: fails queued refresh_token grants before the token is looked up. */
  const beforeFind = (model: string): boolean => {
    if (model !== 'RefreshToken' || refreshFailures.length === 0) return true;
    const ctx = Provider.ctx;
    if (ctx?.oidc?.route !== 'token' || ctx.oidc.params?.grant_type !== 'refresh_token') return true;
    const failure = refreshFailures.shift();
    if (failure === 'server_error') throw new Error('fake-oidc: injected server_error');
    return false; // "not found": oidc-provider answers invalid_grant
  };

  const fake: FakeOidc = {
    issuer,
    counts: { authorization_code: 0, refresh_token: 0, revocation: 0 },
    revoked: [],
    tokenDelayMs: 0,
    accessTokenTtl: 60,
    rotateRefreshTokens: true,
    client({ clientId, clientSecret, redirectUris }) {
      store.clients.set(clientId, {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [...redirectUris],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        application_type: 'web',
      });
    },
    nextUser(user) {
      currentUser = { ...user };
    },
    failRefresh(kind, times = 1) {
      for (let i = 0; i < times; i++) refreshFailures.push(kind);
    },
    authorize: (authorizationUrl) => authorize(issuer, authorizationUrl),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };

  const scopes = ['openid', 'email', 'profile', 'offline_access', ...(options.extraScopes ?? [])];
  const provider = new Provider(issuer, {
    adapter: createAdapter(store, beforeFind),
    jwks: { keys: [rsaKey()] },
    scopes: [...new Set(scopes)],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Scope-requested claims also go into the ID token (not only userinfo), as most providers do.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true, allowedPolicy: async () => true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: false },
      resourceIndicators: { enabled: false },
    },
    pkce: { required: () => false },
    issueRefreshToken: async (_ctx: unknown, client: OidcClient) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => fake.rotateRefreshTokens,
    expiresWithSession: async () => false,
    clientBasedCORS: () => true,
    findAccount: async (_ctx: unknown, sub: string) => ({
      accountId: sub,
      async claims() {
        const user = accounts.get(sub) ?? { sub };
        return Object.fromEntries(Object.entries(user).filter(([, value]) => value !== undefined));
      },
    }),
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    renderError: async (ctx: { type: string; body: string }, out: Record<string, string>) => {
      ctx.type = 'text/plain';
      ctx.body = `${out.error}: ${out.error_description ?? ''}`;
    },
    ttl: {
      AccessToken: () => fake.accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 30 * 24 * 3600,
      Interaction: 3600,
      Session: 24 * 3600,
      Grant: 30 * 24 * 3600,
    },
  });

  provider.use(async (ctx, next) => {
    const isToken = ctx.method === 'POST' && ctx.path === '/token';
    const isRevocation = ctx.method === 'POST' && ctx.path === '/token/revocation';
    if (isToken && fake.tokenDelayMs > 0) await sleep(fake.tokenDelayMs);
    try {
      await next();
    } finally {
      if (isToken) {
        const grantType = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type;
        if (grantType === 'authorization_code' || grantType === 'refresh_token') fake.counts[grantType] += 1;
      }
      if (isRevocation) {
        fake.counts.revocation += 1;
        const token = ctx.oidc?.params?.token ?? ctx.oidc?.body?.token;
        if (typeof token === 'string') fake.revoked.push(token);
      }
    }
  });

  /** Login with the current user, then consent to everything asked; both answered with a redirect back. */
  const interaction = async (req: IncomingMessage, res: ServerResponse) => {
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        const user = { ...currentUser };
        accounts.set(user.sub, user);
        await provider.interactionFinished(
          req,
          res,
          { login: { accountId: user.sub } },
          { mergeWithLastSubmission: false },
        );
        return;
      }
      if (details.prompt.name === 'consent') {
        const accountId = details.session?.accountId;
        if (!accountId) throw new Error('consent without a logged-in session');
        const grant =
          (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ??
          new provider.Grant({ accountId, clientId: details.params.client_id });
        const { missingOIDCScope, missingOIDCClaims } = details.prompt.details;
        if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
        if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      throw new Error(`unsupported prompt ${details.prompt.name}`);
    } catch (error) {
      if (res.headersSent) return;
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`fake-oidc interaction failed: ${(error as Error).message}`);
    }
  };

  const handle = provider.callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' && req.url?.startsWith('/interaction/')) {
      void interaction(req, res);
      return;
    }
    handle(req, res);
  });

  return fake;
}

async function authorize(issuer: string, authorizationUrl: string): Promise<URL> {
  const origin = new URL(issuer).origin;
  const jar = new CookieJar();
  let url = new URL(authorizationUrl);
  if (url.origin !== origin) throw new Error(`fake-oidc: ${url.href} is not on ${origin}`);
  for (let hop = 0; hop < 20; hop++) {
    const cookie = jar.header(url);
    const response = await fetch(url, {
      redirect: 'manual',
      headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) },
    });
    jar.store(response.headers.getSetCookie());
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const next = new URL(location, url);
      if (next.origin !== origin) return next;
      url = next;
      continue;
    }
    const text = (await response.text()).slice(0, 500);
    throw new Error(`fake-oidc: authorization stopped at ${url.pathname} with ${response.status}: ${text}`);
  }
  throw new Error('fake-oidc: too many redirects during authorization');
}
