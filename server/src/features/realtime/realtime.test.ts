import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../../test/fake-llm.js';
import { connectFeed, eventOf, type FeedClient } from '../../../test/feed-client.js';
import { createHarness, type Harness, listen, type TestUser } from '../../../test/harness.js';

let h: Harness;
let llm: FakeLlm;
let baseUrl: string;
const open: FeedClient[] = [];
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8', REALTIME_AUTH_TIMEOUT: '300ms' });
  llm = await startFakeLlm();
  baseUrl = await listen(h.app);
});
after(async () => {
  for (const client of open) client.close();
  await h.close();
  await llm.close();
});

/** A feed client authenticated with its first message; resolves with it and the `auth` answer. */
async function feed(token: string, options: { offset?: string; url?: string } = {}) {
  const client = await connectFeed(options.url ?? baseUrl);
  open.push(client);
  client.send({ type: 'auth', data: { token, ...(options.offset && { offset: options.offset }) } });
  const auth = await client.next((m) => m.type === 'auth', 'the auth answer');
  return { client, auth };
}

const createKey = (user: TestUser, name = 'k') =>
  h.request({ method: 'POST', url: '/api/keys', token: user.accessToken, body: { name } });

describe('GET /api/realtime (WebSocket)', () => {
  it("authenticates with its first message and then carries the user's own events, not another user's", async () => {
    const t = await h.tenant();
    const [user, other] = [await t.user(), await t.user()];
    const { client, auth } = await feed(user.accessToken);
    assert.equal(auth.data.status, 'ok');
    assert.equal(auth.data.user_id, user.id);
    assert.equal(auth.data.recovered, false);
    assert.match(auth.data.offset, /^evt_/);
    assert.equal(typeof auth.timestamp, 'number');

    assert.equal((await createKey(other)).status, 201);
    const created = await createKey(user, 'laptop');
    assert.equal(created.status, 201);
    const update = await client.next(eventOf('api_key.created'), 'api_key.created');
    assert.equal(update.data.event.data.api_key_id, created.body.id);
    assert.match(update.data.event.id, /^evt_/);
    assert.equal(client.messages.filter(eventOf('api_key.created')).length, 1, "the other user's event stays theirs");
  });

  it('authenticates with the gatehouse.bearer.<token> subprotocol, and the server picks gatehouse.v1 (never the token)', async () => {
    const user = await (await h.tenant()).user();
    const client = await connectFeed(baseUrl, { protocols: ['gatehouse.v1', `gatehouse.bearer.${user.apiKey}`] });
    open.push(client);
    assert.equal(client.socket.protocol, 'gatehouse.v1');
    const auth = await client.next((m) => m.type === 'auth');
    assert.equal(auth.data.user_id, user.id);
    assert.equal(auth.data.api_key_id, user.apiKeyId);
    assert.equal(auth.data.expires_at, null, 'a key without expiry');
  });

  it('closes a socket that does not authenticate in time, and refuses a bad token with the reason', async () => {
    const silent = await connectFeed(baseUrl);
    assert.deepEqual(await silent.closed, { code: 4003, reason: 'auth_timeout' });

    const client = await connectFeed(baseUrl);
    client.send({ type: 'auth', data: { token: 'not-a-token' } });
    const error = await client.next((m) => m.type === 'error');
    assert.equal(error.data.code, 'invalid_token');
    assert.deepEqual(await client.closed, { code: 4001, reason: 'invalid_token' });

    const garbage = await connectFeed(baseUrl);
    garbage.socket.send('not json');
    assert.equal((await garbage.closed).code, 4001, 'nothing but auth (or ping) before authenticating');

    const early = await connectFeed(baseUrl);
    early.send({ type: 'request', correlationId: 'c1', data: {} });
    assert.equal((await early.next((m) => m.type === 'error')).data.code, 'unauthorized');
    assert.equal((await early.closed).code, 4001);
  });

  it('answers a plain GET with 426 naming the upgrade it needs', async () => {
    const res = await h.request({ method: 'GET', url: '/api/realtime' });
    assert.equal(res.status, 426);
    assert.equal(res.body.error.code, 'upgrade_required');
    assert.equal(res.headers.upgrade, 'websocket');
  });

  it('refuses upgrades to other paths and malformed ones, and keeps serving', async () => {
    const raw = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1', () =>
          socket.write(
            `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
          ),
        );
        let answer = '';
        socket.on('data', (chunk) => {
          answer += chunk;
        });
        socket.on('close', () => resolve(answer));
        socket.on('error', reject);
      });
    assert.match(await raw('/api/other'), /^HTTP\/1.1 404/);
    assert.match(await raw('//['), /^HTTP\/1.1 400/);
    const user = await (await h.tenant()).user();
    assert.equal((await feed(user.apiKey)).auth.data.status, 'ok');
  });

  it('answers ping with pong and names what is wrong with a message', async () => {
    const user = await (await h.tenant()).user();
    const { client } = await feed(user.apiKey);
    client.send({ type: 'ping', data: { n: 1 }, correlationId: 'p' });
    const pong = await client.next((m) => m.type === 'pong');
    assert.deepEqual([pong.data, pong.correlationId], [{ n: 1 }, 'p']);
    client.socket.send('not json');
    assert.equal((await client.next((m) => m.type === 'error')).data.code, 'invalid_request');
    client.send({ type: 'subscribe', data: {} });
    const wrong = await client.next((m) => m.type === 'error');
    assert.equal(wrong.data.details.fields[0].field, 'type');
    client.send({ type: 'request', data: { model: 'x', prompt: 'hi' } });
    assert.equal((await client.next((m) => m.type === 'error')).data.details.fields[0].field, 'correlationId');
  });

  it('closes the socket of a revoked session with the reason, after the session.revoked event, and refuses it after', async () => {
    const user = await (await h.tenant()).user();
    const { client, auth } = await feed(user.accessToken);
    const keyed = await feed(user.apiKey);
    const revoked = await h.request({
      method: 'DELETE',
      url: `/api/auth/sessions/${auth.data.session_id}`,
      token: user.apiKey,
    });
    assert.equal(revoked.status, 204);
    const event = await client.next(eventOf('session.revoked'));
    assert.equal(event.data.event.data.session_id, auth.data.session_id);
    assert.deepEqual(await client.closed, { code: 4001, reason: 'session_revoked' });
    await keyed.client.next(eventOf('session.revoked'), 'the event on the API-key socket');
    assert.equal(keyed.client.socket.readyState, keyed.client.socket.OPEN, 'other credentials stay connected');

    const again = await connectFeed(baseUrl);
    again.send({ type: 'auth', data: { token: user.accessToken } });
    assert.equal((await again.next((m) => m.type === 'error')).data.code, 'invalid_token');
    assert.equal((await again.closed).code, 4001);
  });

  it('closes the sockets of a deleted user after the user.deleted event', async () => {
    const t = await h.tenant();
    const [admin, user] = [await t.admin(), await t.user()];
    const { client } = await feed(user.apiKey);
    const res = await h.request({ method: 'DELETE', url: `/api/admin/users/${user.id}`, token: admin.accessToken });
    assert.equal(res.status, 204);
    await client.next(eventOf('user.deleted'));
    assert.deepEqual(await client.closed, { code: 4001, reason: 'user_deleted' });
  });

  it('closes the socket of a session revoked for refresh token reuse', async (ctx) => {
    const t = await h.tenant();
    const user = await t.user();
    const { client } = await feed(user.accessToken);
    const refresh = () =>
      h.request({
        method: 'POST',
        url: '/api/auth/refresh',
        tenant: t.publishableKey,
        body: { refresh_token: user.refreshToken },
      });
    assert.equal((await refresh()).status, 200);
    h.clockFor(ctx)(11_000); // past the 10 s grace: the old refresh token again is reuse
    assert.equal((await refresh()).status, 401);
    await client.next(eventOf('session.revoked'));
    assert.deepEqual(await client.closed, { code: 4001, reason: 'session_revoked' });
  });

  it('resumes after a dropped connection from the last offset with recovered: true and what was missed', async (ctx) => {
    const user = await (await h.tenant()).user();
    const first = await feed(user.accessToken);
    await createKey(user, 'seen');
    const seen = await first.client.next(eventOf('api_key.created'));
    first.client.close();
    await first.client.closed;
    const missed = [(await createKey(user, 'missed-1')).body.id, (await createKey(user, 'missed-2')).body.id];

    const resumed = await feed(user.accessToken, { offset: seen.data.event.id });
    assert.equal(resumed.auth.data.recovered, true);
    for (const id of missed) {
      await resumed.client.next(
        (m) => eventOf('api_key.created')(m) && m.data.event.data.api_key_id === id,
        `the missed event of ${id}`,
      );
    }

    // Beyond the resume window (5 minutes by default), the client is told to reload instead.
    h.clockFor(ctx)(6 * 60_000);
    const stale = await feed(user.apiKey, { offset: seen.data.event.id });
    assert.equal(stale.auth.data.recovered, false);
    const invalid = await connectFeed(baseUrl, { offset: 'evt_nope' });
    open.push(invalid);
    invalid.send({ type: 'auth', data: { token: user.apiKey } });
    assert.equal((await invalid.next((m) => m.type === 'error')).data.details.fields[0].field, 'offset');
    assert.equal((await invalid.next((m) => m.type === 'auth')).data.recovered, false);
  });

  it('asks for a fresh token before the access token expires and keeps running when it comes', async (ctx) => {
    const t = await h.tenant();
    const user = await t.user();
    // The access token (15 minutes) has 2 seconds left.
    h.clockFor(ctx)(15 * 60_000 - 2_000);
    const { client } = await feed(user.accessToken);
    const ask = await client.next((m) => m.type === 'auth' && m.data.status === 'refresh_required');
    assert.ok(ask.data.expires_at);
    const refreshed = await h.request({
      method: 'POST',
      url: '/api/auth/refresh',
      tenant: t.publishableKey,
      body: { refresh_token: user.refreshToken },
    });
    assert.equal(refreshed.status, 200, refreshed.text);
    client.send({ type: 'auth', data: { token: refreshed.body.access_token } });
    const renewed = await client.next((m) => m.type === 'auth' && m.data.status === 'ok');
    assert.ok(Date.parse(renewed.data.expires_at) > Date.parse(ask.data.expires_at));
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    assert.equal(client.socket.readyState, client.socket.OPEN, 'still open after the old token expired');
    await createKey({ ...user, accessToken: refreshed.body.access_token });
    await client.next(eventOf('api_key.created'), 'an event after the refresh');

    // Another user's token cannot take a connection over.
    const stranger = await t.user();
    client.send({ type: 'auth', data: { token: stranger.apiKey } });
    assert.deepEqual(await client.closed, { code: 4001, reason: 'user_mismatch' });
  });

  it('closes with token_expired when no fresh token comes', async (ctx) => {
    const user = await (await h.tenant()).user();
    // Three seconds before expiry: enough for the socket to authenticate on a loaded machine.
    h.clockFor(ctx)(15 * 60_000 - 3_000);
    const { client } = await feed(user.accessToken);
    await client.next((m) => m.type === 'auth' && m.data.status === 'refresh_required');
    assert.deepEqual(await client.closed, { code: 4002, reason: 'token_expired' });
  });

  it('runs an LLM request: chunks as updates, then complete with usage, then the usage change', async () => {
    const t = await tenantServedBy(h, llm);
    const user = await t.user();
    const { client } = await feed(user.apiKey);
    client.send({ type: 'request', correlationId: 'q1', data: { model: 'gpt-test', prompt: 'Say hello' } });
    const done = await client.next((m) => m.type === 'complete' && m.correlationId === 'q1', 'complete');
    const deltas = client.messages
      .filter((m) => m.type === 'update' && m.correlationId === 'q1')
      .map((m) => m.data.delta)
      .join('');
    assert.equal(deltas, 'Hello from the fake provider');
    assert.equal(done.data.text, deltas);
    assert.equal(done.data.usage.total_tokens, llm.usage.prompt_tokens + llm.usage.completion_tokens);
    const usage = await client.next(
      (m) => m.type === 'update' && m.data.kind === 'usage' && m.data.usage.tokens_reserved === 0,
      'the usage update after the call was settled',
    );
    assert.equal(usage.data.usage.tokens_used, done.data.usage.total_tokens);

    client.send({ type: 'request', correlationId: 'q2', data: { model: 'no-such-model', prompt: 'hi' } });
    const refused = await client.next((m) => m.type === 'error' && m.correlationId === 'q2');
    assert.equal(refused.data.code, 'not_found');
  });

  it("delivers an app's task progress to its user, or to every user of the tenant", async () => {
    const t = await h.tenant();
    const [alice, bob] = [await t.user(), await t.user()];
    const service = await t.serviceKey();
    const [a, b] = [(await feed(alice.apiKey)).client, (await feed(bob.apiKey)).client];
    const task = { taskId: 'build-7', status: 'processing', progress: 40 };
    const res = await h.request({
      method: 'POST',
      url: '/api/admin/realtime/tasks',
      token: service,
      body: { user_id: alice.id, task },
    });
    assert.equal(res.status, 202, res.text);
    assert.deepEqual((await a.next((m) => m.data?.kind === 'task')).data.task, task);
    const all = await h.request({
      method: 'POST',
      url: '/api/admin/realtime/tasks',
      token: service,
      body: { task: { taskId: 'notice', status: 'completed' } },
    });
    assert.equal(all.status, 202);
    await b.next((m) => m.data?.kind === 'task' && m.data.task.taskId === 'notice', 'the broadcast');
    assert.equal(b.messages.filter((m) => m.data?.task?.taskId === 'build-7').length, 0);

    const unknown = await h.request({
      method: 'POST',
      url: '/api/admin/realtime/tasks',
      token: service,
      body: { user_id: 'usr_nobody', task },
    });
    assert.equal(unknown.status, 404);
    const bad = await h.request({
      method: 'POST',
      url: '/api/admin/realtime/tasks',
      token: service,
      body: { user_id: alice.id, task: { taskId: 'x', status: 'done' } },
    });
    assert.equal(bad.status, 400);
  });
});

describe('realtime across instances', () => {
  it('gets events published on another instance (Redis when set, else PostgreSQL NOTIFY)', async (ctx) => {
    if (!process.env.TEST_DATABASE_URL) return ctx.skip('needs TEST_DATABASE_URL (SQLite mode is one instance)');
    await crossInstance(h);
  });

  it('gets events through PostgreSQL LISTEN/NOTIFY when that is the broker', async (ctx) => {
    if (!process.env.TEST_DATABASE_URL) return ctx.skip('needs TEST_DATABASE_URL (SQLite mode is one instance)');
    const pg = await createHarness({ REALTIME_BROKER: 'postgres', DATABASE_URL: process.env.TEST_DATABASE_URL });
    try {
      assert.equal(pg.deps.realtime.kind, 'postgres');
      await crossInstance(pg);
    } finally {
      await pg.close();
    }
  });
});

/** A socket on a second instance receives an event caused through the first, and its revocation closes it. */
async function crossInstance(harness: Harness) {
  const second = await harness.secondInstance();
  const secondUrl = await listen(second.app);
  const t = await harness.tenant();
  const user = await t.user();
  const client = await connectFeed(secondUrl);
  open.push(client);
  client.send({ type: 'auth', data: { token: user.accessToken } });
  const auth = await client.next((m) => m.type === 'auth');
  const created = await harness.request({
    method: 'POST',
    url: '/api/keys',
    token: user.accessToken,
    body: { name: 'x' },
  });
  assert.equal(created.status, 201);
  const event = await client.next(eventOf('api_key.created'), 'the event from the other instance');
  assert.equal(event.data.event.data.api_key_id, created.body.id);
  await harness.request({ method: 'DELETE', url: `/api/auth/sessions/${auth.data.session_id}`, token: user.apiKey });
  assert.deepEqual(await client.closed, { code: 4001, reason: 'session_revoked' });
}
