import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../server/test/fake-llm.js';
import { createHarness, type Harness, listen } from '../../server/test/harness.js';
import {
  AuthenticationError,
  createClient,
  type FeedEvent,
  memoryStorage,
  NetworkError,
  ValidationError,
  type WebSocketConstructor,
} from '../src/index.js';

let h: Harness;
let baseUrl: string;
let llm: FakeLlm;
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  llm = await startFakeLlm();
  baseUrl = await listen(h.app);
});
after(async () => {
  await h.close();
  await llm.close();
});

/** Counts the requests a client sends, by method and path, passing them on to the real server. */
function countingFetch() {
  const counts = new Map<string, number>();
  const fetchImpl: typeof fetch = (input, init) => {
    const request = new Request(input, init);
    const key = `${request.method} ${new URL(request.url).pathname}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return fetch(request);
  };
  return { fetchImpl, count: (key: string) => counts.get(key) ?? 0 };
}

/** A real local server that answers with `answers` in turn (then 200 {}), and counts what it got. */
async function scripted(answers: { status: number; headers?: Record<string, string>; hang?: boolean }[]) {
  let received = 0;
  const server: Server = createServer((request, response) => {
    const answer = answers[received++];
    request.resume();
    if (answer?.hang) return; // never answers
    response.writeHead(answer?.status ?? 200, { 'content-type': 'application/json', ...answer?.headers });
    response.end(answer && answer.status >= 400 ? JSON.stringify({ error: { code: 'x', message: 'scripted' } }) : '{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('@gatehouse/sdk client', () => {
  it('registers, signs in, reads me, and throws typed errors with the server’s code and requestId', async () => {
    const t = await h.tenant();
    const client = createClient({ baseUrl, tenant: t.publishableKey });
    const registered = await client.auth.register({
      email: 'sdk@example.com',
      password: 'correct horse battery staple',
    });
    assert.match(registered.api_key.key, /^gk_/);
    assert.equal((await client.auth.me()).email, 'sdk@example.com');

    await assert.rejects(
      () => client.auth.register({ email: 'not-an-email', password: 'x' }),
      (error: unknown) => error instanceof ValidationError && error.fields.length > 0 && error.status === 400,
    );
    const other = createClient({ baseUrl, tenant: t.publishableKey });
    await assert.rejects(
      () => other.auth.login({ email: 'sdk@example.com', password: 'wrong password here' }),
      (error: unknown) =>
        error instanceof AuthenticationError &&
        error.code === 'invalid_credentials' &&
        /^req_/.test(String(error.requestId)),
    );
    await client.auth.logout();
    assert.equal(await client.auth.tokens(), null);
    await assert.rejects(() => client.auth.me(), AuthenticationError);
  });

  it('refreshes once for 20 concurrent calls with an expired access token, then uses the new one', async (ctx) => {
    const t = await h.tenant();
    const counting = countingFetch();
    const client = createClient({ baseUrl, tenant: t.publishableKey, fetch: counting.fetchImpl });
    await client.auth.register({ email: 'many@example.com', password: 'correct horse battery staple' });
    const before = (await client.auth.tokens())?.accessToken;
    h.clockFor(ctx)(16 * 60_000); // the server now sees the 15-minute access token as expired
    const answers = await Promise.all(Array.from({ length: 20 }, () => client.auth.me()));
    assert.ok(answers.every((me) => me.email === 'many@example.com'));
    assert.equal(counting.count('POST /api/auth/refresh'), 1, 'one refresh for all 20');
    assert.notEqual((await client.auth.tokens())?.accessToken, before);

    // Known expiry: refreshed before the call, still once for concurrent callers.
    const storage = memoryStorage();
    const proactive = createClient({ baseUrl, tenant: t.publishableKey, storage, fetch: counting.fetchImpl });
    await proactive.auth.login({ email: 'many@example.com', password: 'correct horse battery staple' });
    const stored = await storage.get();
    await storage.set({ ...(stored as NonNullable<typeof stored>), expiresAt: Date.now() - 1 });
    await Promise.all(Array.from({ length: 20 }, () => proactive.auth.me()));
    assert.equal(counting.count('POST /api/auth/refresh'), 2);
  });

  it('retries idempotent calls and 503s with Retry-After, not other failed POSTs, and times out', async () => {
    const flaky = await scripted([{ status: 503, headers: { 'retry-after': '0' } }, { status: 502 }]);
    const client = createClient({ baseUrl: flaky.url, retry: { baseDelayMs: 1 } });
    await client.usage.get();
    assert.equal(flaky.received(), 3, 'GET: 503 and 502 retried');
    await flaky.close();

    const post = await scripted([{ status: 500 }]);
    await assert.rejects(() => createClient({ baseUrl: post.url }).llm.complete({ prompt: 'x', model: 'm' }));
    assert.equal(post.received(), 1, 'a POST that may have been processed is not sent twice');
    await post.close();

    const busy = await scripted([{ status: 503, headers: { 'retry-after': '0' } }]);
    await createClient({ baseUrl: busy.url }).llm.complete({ prompt: 'x', model: 'm' });
    assert.equal(busy.received(), 2, 'a 503 means not processed: the POST is sent again');
    await busy.close();

    const silent = await scripted([{ status: 200, hang: true }]);
    await assert.rejects(
      () => createClient({ baseUrl: silent.url, timeoutMs: 200, retry: { retries: 0 } }).usage.get(),
      (error: unknown) => error instanceof NetworkError && error.code === 'timeout',
    );
    await silent.close();
  });

  it('completes and streams LLM calls, and keeps vault data (saveAuth, getAuth, revokeAuth)', async () => {
    const t = await tenantServedBy(h, llm);
    const client = createClient({ baseUrl, tenant: t.publishableKey });
    await client.auth.register({ email: 'llm@example.com', password: 'correct horse battery staple' });
    const answer = await client.llm.complete({ prompt: 'Say hello', model: 'gpt-test' });
    assert.equal(answer.text, 'Hello from the fake provider');
    let streamed = '';
    for await (const delta of client.llm.stream({ model: 'gpt-test', prompt: 'Say hello' })) streamed += delta;
    assert.equal(streamed, 'Hello from the fake provider');

    await client.vault.saveAuth('github', { access_token: 'gho_x' });
    assert.deepEqual((await client.vault.getAuth('github'))?.auth_data, { access_token: 'gho_x' });
    await client.vault.revokeAuth('github');
    assert.equal(await client.vault.getAuth('github'), null);
  });

  it('realtime: gets events and resumes after a dropped connection without repeats', async () => {
    const t = await h.tenant();
    const client = createClient({ baseUrl, tenant: t.publishableKey });
    await client.auth.register({ email: 'live@example.com', password: 'correct horse battery staple' });
    const feed = client.realtime.connect({
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      reconnect: { baseDelayMs: 10 },
    });
    const events: FeedEvent[] = [];
    const opens: boolean[] = [];
    feed.on('event', (event) => events.push(event));
    feed.on('open', ({ recovered }) => opens.push(recovered));
    await until(() => opens.length === 1);
    await client.keys.create({ name: 'first' });
    await until(() => events.some((e) => e.type === 'api_key.created'));

    // Drop the connection, change something while it is down: the feed comes back and replays it.
    (feed as unknown as { socket: WebSocket }).socket.terminate();
    await client.keys.create({ name: 'while-away' });
    await until(() => opens.length === 2);
    assert.equal(opens[1], true, 'recovered');
    await until(() => events.some((e) => e.type === 'api_key.created' && e.data.name === 'while-away'));
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'no event twice');
    feed.close();
  });
  it('realtime: renews its token on a live socket when the server asks, and keeps running past the old expiry', async (ctx) => {
    const t = await h.tenant();
    const counting = countingFetch();
    const client = createClient({ baseUrl, tenant: t.publishableKey, fetch: counting.fetchImpl });
    await client.auth.register({ email: 'renew@example.com', password: 'correct horse battery staple' });
    h.clockFor(ctx)(15 * 60_000 - 2_000); // for the server, the access token has 2 seconds left
    const feed = client.realtime.connect({ WebSocket: WebSocket as unknown as WebSocketConstructor });
    const closed: string[] = [];
    const events: FeedEvent[] = [];
    let opens = 0;
    feed.on('close', ({ reason }) => closed.push(reason));
    feed.on('event', (event) => events.push(event));
    feed.on('open', () => opens++);
    await until(() => counting.count('POST /api/auth/refresh') === 1);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    assert.deepEqual(closed, [], 'still open after the old token expired');
    assert.equal(opens, 1, 'renewed on the same socket, not by reconnecting');
    await client.keys.create({ name: 'after-renewal' });
    await until(() => events.some((e) => e.data.name === 'after-renewal'));
    feed.close();
  });
});

async function until(check: () => boolean, timeoutMs = 5_000) {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
