import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../../../test/fake-llm.js';
import { connectFeed, type FeedClient } from '../../../test/feed-client.js';
import { createHarness, fieldsOf, type Harness, listen } from '../../../test/harness.js';
import { createLogger } from '../../logger.js';
import { guarded } from './guard.js';

// What the realtime feed accepts and echoes, and that no message can stop the process
// (docs/realtime.md, "Limits"). The feed's behaviour is in realtime.test.ts.

let h: Harness;
let llm: FakeLlm;
let baseUrl: string;
const open: FeedClient[] = [];
/** Every unhandled rejection and uncaught exception while this file runs: each would stop a server. */
const crashes: unknown[] = [];
const record = (error: unknown) => crashes.push(error);
before(async () => {
  process.on('unhandledRejection', record);
  process.on('uncaughtException', record);
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  llm = await startFakeLlm();
  baseUrl = await listen(h.app);
});
after(async () => {
  for (const client of open) client.close();
  await h.close();
  await llm.close();
  process.off('unhandledRejection', record);
  process.off('uncaughtException', record);
});

/** `[[…]]` nested `depth` deep. */
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

async function connect(): Promise<FeedClient> {
  const client = await connectFeed(baseUrl);
  open.push(client);
  return client;
}

/** A client authenticated with an API key of a fresh user. */
async function authenticated(): Promise<FeedClient> {
  const user = await (await h.tenant()).user();
  const client = await connect();
  client.send({ type: 'auth', data: { token: user.apiKey } });
  assert.equal((await client.next((m) => m.type === 'auth', 'the auth answer')).data.status, 'ok');
  return client;
}

/** The server still serves: a fresh client authenticates and gets its pong. */
async function assertServing() {
  const client = await authenticated();
  client.send({ type: 'ping', correlationId: 'alive' });
  await client.next((m) => m.type === 'pong' && m.correlationId === 'alive', 'a pong from a fresh client');
  assert.deepEqual(crashes, [], 'no unhandled rejection or uncaught exception');
}

const error = (client: FeedClient) => client.next((m) => m.type === 'error', 'an error message');

describe('realtime feed: what one message can do', () => {
  it('a ping nested 10,000 deep closes its own socket (1009 before auth, an error after), never the server', async () => {
    // JSON.stringify throws RangeError on a value this deep: it used to be echoed, unhandled, and stop Node.
    const deep = `{"type":"ping","data":${nested(10_000)}}`;
    const anonymous = await connect();
    anonymous.socket.send(deep);
    assert.equal((await anonymous.closed).code, 1009, 'over 8 KiB before authentication');

    const client = await authenticated();
    client.socket.send(deep);
    const refused = await error(client);
    assert.equal(refused.data.code, 'invalid_request');
    assert.match(refused.data.message, /at most 32 deep/);
    assert.equal(refused.data.details.max_depth, 32);
    client.send({ type: 'ping', correlationId: 'after' });
    await client.next((m) => m.type === 'pong' && m.correlationId === 'after', 'a pong on the same socket');
    await assertServing();
  });

  it('before authentication: nesting over 32 gets an error naming the depth, then 4001; 32 is taken', async () => {
    const client = await connect();
    client.socket.send(`{"type":"auth","data":{"token":${nested(31)}}}`);
    const refused = await error(client);
    assert.equal(refused.data.code, 'invalid_request');
    assert.match(refused.data.message, /at most 32 deep/);
    assert.deepEqual(await client.closed, { code: 4001, reason: 'unauthorized' });

    const within = await connect();
    within.socket.send(`{"type":"ping","correlationId":"d","data":${nested(31)}}`);
    const pong = await within.next((m) => m.type === 'pong');
    assert.deepEqual([pong.data, pong.correlationId], [null, 'd'], 'no echo before authentication');
  });

  it('before authentication: a message over 8 KiB closes with 1009, a fragmented one at its first fragment', async () => {
    const whole = await connect();
    whole.send({ type: 'ping', data: 'x'.repeat(8_200) });
    assert.equal((await whole.closed).code, 1009);

    // The first fragment alone is over the bound: the server closes without waiting for the rest.
    const fragmented = await connect();
    fragmented.socket.send(`{"type":"ping","data":"${'x'.repeat(9_000)}`, { fin: false });
    assert.equal((await fragmented.closed).code, 1009);

    const small = await connect();
    small.socket.send('{"type":"ping",', { fin: false });
    small.socket.send('"correlationId":"f"}', { fin: true });
    assert.equal((await small.next((m) => m.type === 'pong')).correlationId, 'f', 'small fragments reassemble');
    await assertServing();
  });

  it('after authentication: 64 KiB messages are taken, one over 1 MiB closes with 1009', async () => {
    const client = await authenticated();
    client.send({ type: 'ping', correlationId: 'big', data: 'x'.repeat(65_536) });
    const refused = await client.next((m) => m.type === 'error' && m.correlationId === 'big');
    assert.equal(refused.data.code, 'validation_failed');
    assert.deepEqual(
      refused.data.details.fields.map((f: { field: string }) => f.field),
      ['data'],
      'the echo is bounded, not the message',
    );
    assert.match(refused.data.message, /1024 bytes/);
    client.send({ type: 'ping', data: 'x'.repeat(1_048_577) });
    assert.equal((await client.closed).code, 1009);
  });

  it('binary messages: an error, then 4001 before authentication; an error alone after', async () => {
    const anonymous = await connect();
    anonymous.socket.send(Buffer.from('{"type":"ping"}'), { binary: true });
    assert.match((await error(anonymous)).data.message, /Binary messages are not accepted/);
    assert.deepEqual(await anonymous.closed, { code: 4001, reason: 'unauthorized' });

    const client = await authenticated();
    client.socket.send(Buffer.from([0, 1, 2, 255]), { binary: true });
    assert.equal((await error(client)).data.code, 'invalid_request');
    assert.equal(client.socket.readyState, client.socket.OPEN);
  });

  it('ping: no echo before authentication; after it, data up to 1 KiB comes back', async () => {
    const anonymous = await connect();
    anonymous.send({ type: 'ping', correlationId: 'p0', data: { secret: 'not echoed' } });
    const bare = await anonymous.next((m) => m.type === 'pong');
    assert.deepEqual([bare.data, bare.correlationId], [null, 'p0']);

    const client = await authenticated();
    client.send({ type: 'ping', correlationId: 'p1', data: { n: 1, s: 'x'.repeat(900) } });
    assert.equal((await client.next((m) => m.type === 'pong')).data.n, 1);
  });

  it('names the envelope field that is wrong: correlationId, type, data.token, data.offset', async () => {
    const client = await authenticated();
    const named = async (message: Record<string, unknown>, field: string) => {
      client.send(message);
      const refused = await error(client);
      assert.equal(refused.data.code, 'validation_failed', JSON.stringify(message));
      assert.deepEqual(
        refused.data.details.fields.map((f: { field: string }) => f.field),
        [field],
      );
    };
    await named({ type: 'ping', correlationId: 7 }, 'correlationId');
    await named({ type: 'ping', correlationId: 'c'.repeat(129) }, 'correlationId');
    await named({ type: ['auth'] }, 'type');
    await named({ type: 'update', data: {} }, 'type');
    await named({ type: 'auth', data: { token: 42 } }, 'data.token');
    await named({ type: 'auth', data: { token: 't'.repeat(4_097) } }, 'data.token');
    await named({ type: 'auth', data: 'token' }, 'data.token');
    await named({ type: 'auth', data: { token: 'x', offset: { $gt: '' } } }, 'data.offset');
    assert.equal(client.socket.readyState, client.socket.OPEN, 'after authentication, bad messages do not close');

    const anonymous = await connect();
    anonymous.send({ type: 'auth', data: { token: ['a'] } });
    assert.deepEqual(
      (await error(anonymous)).data.details.fields.map((f: { field: string }) => f.field),
      ['data.token'],
    );
    assert.deepEqual(await anonymous.closed, { code: 4001, reason: 'unauthorized' }, 'before it, they do');
  });

  it('names the request field that is wrong, and runs at most 4 requests of a burst at once', async () => {
    const t = await tenantServedBy(h, llm);
    const user = await t.user();
    const client = await connect();
    client.send({ type: 'auth', data: { token: user.apiKey } });
    await client.next((m) => m.type === 'auth');
    const named = async (data: unknown, field: string) => {
      const correlationId = `r${Math.random()}`;
      client.send({ type: 'request', correlationId, data });
      const refused = await client.next((m) => m.type === 'error' && m.correlationId === correlationId);
      assert.equal(refused.data.code, 'validation_failed', JSON.stringify(data));
      assert.deepEqual(
        refused.data.details.fields.map((f: { field: string }) => f.field),
        [field],
        JSON.stringify(data),
      );
    };
    await named([], 'data');
    await named({ model: 7, prompt: 'hi' }, 'data.model');
    await named({ model: 'gpt-test', messages: [{ role: 5 }] }, 'data.messages.0.role');
    await named({ model: 'gpt-test', messages: [null] }, 'data.messages.0');
    await named({ model: 'gpt-test', messages: [] }, 'data.messages');
    await named({ model: 'gpt-test', prompt: 'hi', max_tokens: '10' }, 'data.max_tokens');
    await named({ model: 'gpt-test', prompt: 'hi', temperature: 9 }, 'data.temperature');
    await named({ model: 'gpt-test', prompt: 'hi', stop: [1] }, 'data.stop');
    await named(JSON.parse('{"model":"gpt-test","prompt":"hi","__proto__":{"x":1}}'), 'data.__proto__');
    await named({ model: 'gpt-test', prompt: 'hi', messages: [{ role: 'user', content: 'hi' }] }, 'data.prompt');

    // Eight at once, on a provider that never answers: four run, four are refused.
    llm.next(...Array<'stall'>(8).fill('stall'));
    for (let i = 0; i < 8; i++) {
      client.send({ type: 'request', correlationId: `burst${i}`, data: { model: 'gpt-test', prompt: 'hi' } });
    }
    for (let i = 0; i < 4; i++) {
      await client.next(
        (m) => m.type === 'error' && m.data.code === 'rate_limited' && m.correlationId?.startsWith('burst') === true,
        'a refused request of the burst',
      );
    }
    client.close();
    await client.closed;
    llm.reset();
    assert.equal(
      client.messages.filter((m) => m.type === 'error' && m.data.code === 'rate_limited').length,
      4,
      'exactly four were refused',
    );
  });
});

describe('POST /api/admin/realtime/tasks bounds', () => {
  it('400 names task.data when it nests deeper than 16, also at 10,000 levels (no 500)', async () => {
    const t = await h.tenant();
    const service = await t.serviceKey();
    // As raw JSON text: a client serialising a value this deep would throw before sending it.
    const post = (data: string) =>
      h.request({
        method: 'POST',
        url: '/api/admin/realtime/tasks',
        token: service,
        headers: { 'content-type': 'application/json' },
        body: `{"task":{"taskId":"deep","status":"processing","data":${data}}}`,
      });
    const deep = await post(nested(17));
    assert.equal(deep.status, 400, deep.text);
    assert.deepEqual(fieldsOf(deep), ['task.data']);
    assert.match(deep.body.error.message, /at most 16 deep/);
    const deeper = await post(nested(10_000));
    assert.equal(deeper.status, 400, deeper.text);
    assert.equal((await post(nested(16))).status, 202);
  });
});

describe('guarded (how every listener and timer of the feed runs)', () => {
  it('logs a throw or a rejection and hands it to fail; a failing fail is logged, never thrown', async () => {
    const lines: string[] = [];
    const log = createLogger(
      'error',
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    const failed: unknown[] = [];
    guarded(
      log,
      'sync listener',
      () => {
        throw new Error('sync boom');
      },
      (error) => failed.push(error),
    )();
    guarded(
      log,
      'async listener',
      async () => {
        throw new Error('async boom');
      },
      (error) => failed.push(error),
    )();
    guarded(
      log,
      'listener whose fail throws',
      () => {
        throw new Error('first');
      },
      () => {
        throw new Error('second');
      },
    )();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      failed.map((error) => (error as Error).message),
      ['sync boom', 'async boom'],
    );
    const logged = lines.map((line) => JSON.parse(line).msg);
    assert.ok(logged.includes('realtime: sync listener failed'));
    assert.ok(logged.includes('realtime: async listener failed'));
    assert.ok(logged.includes('realtime: listener whose fail throws: closing after the failure failed too'));
    assert.deepEqual(crashes, []);
  });
});

describe('a database that fails under live sockets', () => {
  it('is not reported as a revocation: a request gets internal_error and the socket stays open; a renewal closes with 1011', async () => {
    // Its own app, without an auth cache, so every check reaches the database; the API keys'
    // table is renamed away under the live socket (a real database error on both dialects).
    const broken = await createHarness({ AUTH_CACHE_TTL: '0' });
    const { kysely } = broken.deps.db;
    try {
      const url = await listen(broken.app);
      const user = await (await broken.tenant()).user();
      const client = await connectFeed(url);
      client.send({ type: 'auth', data: { token: user.apiKey } });
      assert.equal((await client.next((m) => m.type === 'auth')).data.status, 'ok');
      await sql`alter table api_keys rename to api_keys_away`.execute(kysely);

      client.send({ type: 'request', correlationId: 'q', data: { model: 'gpt-test', prompt: 'hi' } });
      const failed = await client.next((m) => m.type === 'error' && m.correlationId === 'q');
      assert.equal(failed.data.code, 'internal_error');
      assert.equal(failed.data.message.includes('api_keys'), false, 'the cause is logged, not sent');
      client.send({ type: 'ping', correlationId: 'still' });
      await client.next((m) => m.type === 'pong' && m.correlationId === 'still', 'a pong: the socket is still open');

      client.send({ type: 'auth', data: { token: user.apiKey } });
      assert.equal((await error(client)).data.code, 'internal_error');
      assert.deepEqual(await client.closed, { code: 1011, reason: 'internal_error' });
      assert.ok(
        broken.logs.some((line) => JSON.parse(line).msg === 'realtime: message failed'),
        'the cause is logged',
      );
    } finally {
      await sql`alter table api_keys_away rename to api_keys`.execute(kysely).catch(() => {});
      await broken.close();
    }
  });
});
