import { createParser } from 'eventsource-parser';
import createFetchClient from 'openapi-fetch';
import { AuthenticationError, GatehouseError } from './errors.js';
import type { components, paths } from './generated/openapi.js';
import { RealtimeConnection, type RealtimeOptions } from './realtime.js';
import { memoryStorage, type StoredTokens, type TokenStorage } from './storage.js';
import { ensureOk, type RetryOptions, retryingFetch } from './transport.js';

export type User = components['schemas']['User'];
type Body<P extends keyof paths, M extends 'post' | 'put' | 'patch'> = paths[P][M] extends {
  requestBody?: { content: { 'application/json': infer B } };
}
  ? B
  : never;

export interface ClientOptions {
  /** Where Gatehouse runs, e.g. https://auth.example.com */
  baseUrl: string;
  /** The tenant's publishable key (pk_…), for sign-up and sign-in; omit for the default tenant. */
  tenant?: string;
  /** Where tokens are kept (default: in memory). */
  storage?: TokenStorage;
  /** Per attempt (default 30 s; LLM streams are not cut by it once they answer). */
  timeoutMs?: number;
  retry?: Partial<RetryOptions>;
  fetch?: typeof fetch;
  /** Refresh this long before the access token expires (default 30 s). */
  refreshLeewayMs?: number;
}

/** Paths that take no bearer token (a stale one must not be sent to them). */
const PUBLIC = new Set([
  '/api/auth/login',
  '/api/auth/register',
  '/api/auth/refresh',
  '/api/auth/device/code',
  '/api/auth/device/token',
]);

export type GatehouseClient = ReturnType<typeof createClient>;

/**
 * A Gatehouse client for browsers and Node ≥ 20: typed from the server's OpenAPI document, with
 * tokens in a pluggable storage, automatic single-flight refresh (any number of concurrent calls
 * with an expired access token cause one refresh), retries with backoff, timeouts, and errors as
 * typed classes carrying the server's `code` and `requestId`.
 */
export function createClient(options: ClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const storage = options.storage ?? memoryStorage();
  const leeway = options.refreshLeewayMs ?? 30_000;
  const transport = retryingFetch(options.fetch ?? globalThis.fetch.bind(globalThis), {
    timeoutMs: options.timeoutMs ?? 30_000,
    retry: { retries: 2, baseDelayMs: 250, maxDelayMs: 5_000, ...options.retry },
  });
  const listeners = new Set<(tokens: StoredTokens | null) => void>();
  let refreshing: Promise<StoredTokens> | null = null;

  const save = async (pair: { access_token: string; refresh_token?: string | null; expires_in: number }) => {
    const tokens: StoredTokens = {
      accessToken: pair.access_token,
      refreshToken: pair.refresh_token ?? null,
      expiresAt: Date.now() + pair.expires_in * 1000,
    };
    await storage.set(tokens);
    for (const listener of listeners) listener(tokens);
    return tokens;
  };
  const forget = async () => {
    await storage.clear();
    for (const listener of listeners) listener(null);
  };

  /** One refresh at a time: every caller that finds the token expired waits for the same one. */
  const refresh = (): Promise<StoredTokens> => {
    refreshing ??= (async () => {
      const current = await storage.get();
      if (!current?.refreshToken) throw new AuthenticationError('Not signed in', 'unauthorized', 401);
      const response = await transport(
        new Request(`${baseUrl}/api/auth/refresh`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...tenantHeader() },
          body: JSON.stringify({ refresh_token: current.refreshToken }),
        }),
      );
      const body = await response.json().catch(() => undefined);
      if (!response.ok) {
        const error = await GatehouseError.fromResponse(response, body);
        if (response.status === 401) await forget();
        throw error;
      }
      return save(body as { access_token: string; refresh_token: string; expires_in: number });
    })().finally(() => {
      refreshing = null;
    });
    return refreshing;
  };

  const tenantHeader = (): Record<string, string> => (options.tenant ? { 'x-gatehouse-tenant': options.tenant } : {});

  /** The access token to send: refreshed first when it expires within the leeway. */
  const accessToken = async (): Promise<string | null> => {
    const tokens = await storage.get();
    if (!tokens) return null;
    if (tokens.refreshToken && tokens.expiresAt - leeway <= Date.now()) return (await refresh()).accessToken;
    return tokens.accessToken;
  };

  /** Every request: the tenant, the bearer token, and one refresh-and-retry on a 401. */
  const authFetch = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    const withToken = (token: string | null) => {
      const headers = new Headers(request.headers);
      for (const [name, value] of Object.entries(tenantHeader())) headers.set(name, value);
      if (token && !headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
      return new Request(request.clone(), { headers });
    };
    const token = PUBLIC.has(path) || request.headers.has('authorization') ? null : await accessToken();
    const response = await transport(withToken(token));
    if (response.status !== 401 || token === null) return response;
    const tokens = await storage.get();
    if (!tokens?.refreshToken) return response;
    // The token was revoked or expired early: refresh once (shared with concurrent callers) and retry.
    const fresh = tokens.accessToken !== token ? tokens : await refresh().catch(() => null);
    if (!fresh) return response;
    return transport(withToken(fresh.accessToken));
  };

  const api = createFetchClient<paths>({ baseUrl, fetch: authFetch });

  /** The data of an answer, or its error thrown as a GatehouseError. */
  const data = async <T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> => {
    const { data: body, error, response } = await call;
    if (error !== undefined || !response.ok) throw await GatehouseError.fromResponse(response, error);
    return body as T;
  };

  const auth = {
    async register(input: Body<'/api/auth/register', 'post'>) {
      const answer = await data(api.POST('/api/auth/register', { body: input }));
      await save(answer);
      return answer;
    },
    async login(input: { email: string; password: string }) {
      const answer = await data(api.POST('/api/auth/login', { body: input }));
      await save(answer);
      return answer;
    },
    /** Ends this session on the server and forgets the tokens here (also when the server cannot be reached). */
    async logout() {
      try {
        const tokens = await storage.get();
        if (tokens) await data(api.POST('/api/auth/logout', { body: {} }));
      } finally {
        await forget();
      }
    },
    refresh,
    me: () => data(api.GET('/api/auth/me')),
    sessions: () => data(api.GET('/api/auth/sessions')),
    revokeSession: (id: string) => data(api.DELETE('/api/auth/sessions/{id}', { params: { path: { id } } })),
    /** The stored tokens, if signed in. */
    tokens: async () => storage.get(),
    /** Called with the new tokens after sign-in and refresh, and with null after sign-out. */
    onChange(listener: (tokens: StoredTokens | null) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    /**
     * RFC 8628 device sign-in: show `userCode` and open `verificationUriComplete`, then await
     * `complete()`, which polls as the server asks and stores the tokens once approved. `clientId`
     * (printable ASCII) is shown on the approval page as an unverified claim, unless Gatehouse knows
     * it (docs/accounts.md, "Device sign-in").
     */
    async startDeviceSignIn(input: { clientId?: string } = {}) {
      const code = await data(
        api.POST('/api/auth/device/code', { body: input.clientId ? { client_id: input.clientId } : {} }),
      );
      return {
        userCode: code.user_code,
        verificationUri: code.verification_uri,
        verificationUriComplete: code.verification_uri_complete,
        expiresIn: code.expires_in,
        complete: (signal?: AbortSignal) => pollDevice(code.device_code, code.interval, signal),
      };
    },
  };

  const pollDevice = async (deviceCode: string, interval: number, signal?: AbortSignal) => {
    let wait = interval;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      signal?.throwIfAborted();
      const response = await transport(
        new Request(`${baseUrl}/api/auth/device/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...tenantHeader() },
          body: JSON.stringify({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: deviceCode }),
        }),
      );
      const body = (await response.json()) as { error?: string; error_description?: string } & Record<string, unknown>;
      if (response.ok) {
        await save(body as unknown as { access_token: string; refresh_token: string; expires_in: number });
        return body as unknown as { user: User };
      }
      if (body.error === 'authorization_pending') continue;
      if (body.error === 'slow_down') {
        wait += 5;
        continue;
      }
      throw new GatehouseError(
        body.error_description ?? 'Device sign-in failed',
        body.error ?? 'device_error',
        response.status,
      );
    }
  };

  const keys = {
    list: () => data(api.GET('/api/keys')),
    create: (input: Body<'/api/keys', 'post'>) => data(api.POST('/api/keys', { body: input })),
    revoke: (id: string) => data(api.DELETE('/api/keys/{id}', { params: { path: { id } } })),
    rotate: (id: string) => data(api.POST('/api/keys/{id}/rotate', { params: { path: { id } }, body: {} })),
  };

  const usage = { get: () => data(api.GET('/api/usage')) };

  const llm = {
    /** Seed 001's simple form: a prompt in, the text out (with usage and cost). */
    complete: (input: Body<'/api/llm/completion', 'post'>) =>
      data(api.POST('/api/llm/completion', { body: { ...input, stream: false } })),
    /** A streamed chat completion: yields the text as it arrives; throws if the stream breaks off. */
    async *stream(input: {
      model: string;
      prompt?: string;
      messages?: { role: string; content: string }[];
      max_tokens?: number;
    }) {
      const messages = input.messages ?? [{ role: 'user', content: input.prompt ?? '' }];
      const response = await authFetch(
        new Request(`${baseUrl}/api/llm/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: input.model, messages, max_tokens: input.max_tokens, stream: true }),
        }),
      );
      await ensureOk(response);
      const queue: string[] = [];
      let failure: GatehouseError | null = null;
      let done = false;
      const parser = createParser({
        onEvent(event) {
          if (event.data === '[DONE]') {
            done = true;
            return;
          }
          const chunk = JSON.parse(event.data) as {
            choices?: { delta?: { content?: string } }[];
            error?: { message: string; code: string };
          };
          if (chunk.error) failure = new GatehouseError(chunk.error.message, chunk.error.code, 502);
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) queue.push(delta);
        },
      });
      const decoder = new TextDecoder();
      for await (const bytes of response.body as unknown as AsyncIterable<Uint8Array>) {
        parser.feed(decoder.decode(bytes, { stream: true }));
        while (queue.length > 0) yield queue.shift() as string;
        if (failure) throw failure;
      }
      if (failure) throw failure;
      if (!done) throw new GatehouseError('The stream ended before it was complete', 'upstream_interrupted', 502);
    },
  };

  /** Seed 004's developer functions over the credential vault. `userId` is for service keys acting for a user. */
  const vault = {
    sendAuthLink: (service: string, input: Omit<Body<'/api/vault/auth-url', 'post'>, 'service'> = {}) =>
      data(api.POST('/api/vault/auth-url', { body: { service, ...input } })),
    saveAuth: (service: string, authData: unknown, input: { expiresAt?: string | null; userId?: string } = {}) =>
      data(
        api.PUT('/api/vault/connections/{service}', {
          params: { path: { service }, query: input.userId ? { user_id: input.userId } : {} },
          body: { auth_data: authData, ...(input.expiresAt !== undefined && { expires_at: input.expiresAt }) },
        }),
      ),
    /** The stored data, or null when the user has no connection to this service. */
    async getAuth(service: string, input: { userId?: string } = {}) {
      try {
        return await data(
          api.GET('/api/vault/connections/{service}', {
            params: { path: { service }, query: input.userId ? { user_id: input.userId } : {} },
          }),
        );
      } catch (error) {
        if (error instanceof GatehouseError && error.status === 404) return null;
        throw error;
      }
    },
    refreshAuth: (service: string, input: { userId?: string } = {}) =>
      data(
        api.POST('/api/vault/connections/{service}/refresh', {
          params: { path: { service }, query: input.userId ? { user_id: input.userId } : {} },
        }),
      ),
    revokeAuth: (service: string, input: { userId?: string } = {}) =>
      data(
        api.DELETE('/api/vault/connections/{service}', {
          params: { path: { service }, query: input.userId ? { user_id: input.userId } : {} },
        }),
      ),
  };

  const realtime = {
    /** Opens the live feed; it reconnects and resumes by itself, and renews its token as asked. */
    connect: (connectOptions: RealtimeOptions = {}) =>
      new RealtimeConnection(
        baseUrl,
        async () => {
          const token = await accessToken();
          if (!token) throw new AuthenticationError('Sign in before opening the realtime feed', 'unauthorized', 401);
          return token;
        },
        refresh,
        connectOptions,
      ),
  };

  return { api, auth, keys, usage, llm, vault, realtime };
}
