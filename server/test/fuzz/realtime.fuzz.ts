import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { connect as connectTcp, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ERROR_STATUS } from '../../src/errors.js';
import { type FakeLlm, startFakeLlm, tenantServedBy } from '../fake-llm.js';
import { connectFeed, type FeedClient, type FeedMessage } from '../feed-client.js';
import { createHarness, type Harness, listen, type TestUser } from '../harness.js';

// The WebSocket protocol of GET /api/realtime, fuzzed before and after authentication (docs/realtime.md,
// "Limits" and "Close codes"): broken JSON, binary and malformed frames, huge and deep values, NUL and
// control characters, prototype keys, wrong types for every field, unknown types and floods. Every bad
// message must get an `error` (never internal_error) or a close with a documented code; the process
// stays up (no unhandled rejection, no error logged), a fresh client still authenticates and gets its
// pong, and nothing is half-written (the user's budget holds exactly what the completed calls used).
//
// Loopback only. Seeded: FUZZ_SEED=<n> repeats a run; the seed is printed first.
//   node --conditions=gatehouse-source --import tsx --test server/test/fuzz/realtime.fuzz.ts
// (TEST_DATABASE_URL / TEST_REDIS_URL as for the rest of the suite, for PostgreSQL and Redis.)

const seed = Number(process.env.FUZZ_SEED ?? randomInt(2 ** 31));
console.log(`realtime fuzz: seed ${seed} (repeat with FUZZ_SEED=${seed})`);

/** mulberry32: a small seeded generator, so a failing run can be repeated exactly. */
const random = (() => {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
})();
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;

/** Close codes docs/realtime.md lists, less 1011 (an internal error is a bug here) and 1001 (shutdown). */
const DOCUMENTED_CLOSES = new Set([1002, 1007, 1009, 4001, 4002, 4003, 4008, 4029]);
const DEEP = '"\u0000deep\u0000"'; // replaced by 10,000 levels of nesting once serialised

let h: Harness;
let llm: FakeLlm;
let baseUrl: string;
let user: TestUser;
const clients: FeedClient[] = [];
const crashes: unknown[] = [];
const record = (error: unknown) => crashes.push(error);
/** Tokens of every `complete` received: what the user's budget must show as used at the end. */
let completedTokens = 0;
let logsBefore = 0;

before(async () => {
  process.on('unhandledRejection', record);
  process.on('uncaughtException', record);
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8', REALTIME_AUTH_TIMEOUT: '2s' });
  llm = await startFakeLlm();
  baseUrl = await listen(h.app);
  const tenant = await tenantServedBy(h, llm);
  user = await tenant.user();
  // Hundreds of connections and calls: no hourly limit gets in the way (the limits have their own tests).
  await tenant.putOnPlan(user.id, {
    requests_per_hour: null,
    llm_requests_per_hour: null,
    tokens_per_month: 100_000_000,
    max_tokens_per_request: 1_000,
  });
  logsBefore = h.logs.length;
});
after(async () => {
  console.log(`realtime fuzz (seed ${seed}) answers: ${JSON.stringify(Object.fromEntries([...seen].sort()))}`);
  for (const client of clients) client.close();
  await h.close();
  await llm.close();
  process.off('unhandledRejection', record);
  process.off('uncaughtException', record);
});

// ---- what is sent ------------------------------------------------------------------------------

const controlChars = () =>
  Array.from({ length: 1 + int(8) }, () =>
    String.fromCharCode(pick([0, 1, 7, 8, 9, 10, 13, 27, 31, 127, 0x85, 0x2028, 0x2029, 0xfeff, 0xd800])),
  ).join('');
const nestedArray = (depth: number): unknown => (depth === 0 ? [] : [nestedArray(depth - 1)]);

/** A value of any wrong shape. */
const junk = (): unknown =>
  pick<() => unknown>([
    () => null,
    () => true,
    () => 0,
    () => -1,
    () => 1.5,
    () => 1e308,
    () => 2 ** 53 + 1,
    () => '',
    () => controlChars(),
    () => `a\u0000b${controlChars()}`,
    () => 'x'.repeat(int(20_000)),
    () => '\ud800\udfff\ufffe',
    () => "' OR 1=1 --",
    () => '../../etc/passwd',
    () => [],
    () => [null, 1, 'x', {}],
    () => ({}),
    () => ({ a: { b: { c: controlChars() } } }),
    () => nestedArray(33),
    () => nestedArray(20),
    () => DEEP,
    () => JSON.parse('{"__proto__":{"polluted":true}}'),
    () => JSON.parse('{"constructor":{"prototype":{"polluted":true}}}'),
    () => ({ toString: 'x', valueOf: 1, hasOwnProperty: null }),
  ])();

const baseMessages = (): Record<string, unknown>[] => [
  { type: 'auth', data: { token: user.apiKey } },
  { type: 'auth', data: { token: user.apiKey, offset: 'evt_01m97477t6c45t1d16ab9afeak' }, correlationId: 'a' },
  { type: 'ping', data: { n: 1 }, correlationId: 'p' },
  { type: 'request', correlationId: 'r', data: { model: 'gpt-test', prompt: 'hi', max_tokens: 5 } },
  {
    type: 'request',
    correlationId: 'r',
    data: {
      action: 'llm.completion',
      model: 'gpt-test',
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.5,
      top_p: 1,
      stop: ['\n'],
      seed: 7,
    },
  },
];

const PATHS = [
  ['type'],
  ['correlationId'],
  ['data'],
  ['data', 'token'],
  ['data', 'offset'],
  ['data', 'model'],
  ['data', 'prompt'],
  ['data', 'messages'],
  ['data', 'messages', '0'],
  ['data', 'messages', '0', 'role'],
  ['data', 'messages', '0', 'content'],
  ['data', 'max_tokens'],
  ['data', 'temperature'],
  ['data', 'top_p'],
  ['data', 'stop'],
  ['data', 'seed'],
  ['data', 'action'],
];

/** One frame to send: its bytes, whether binary, and a description for failures. */
interface Payload {
  data: string | Buffer;
  binary?: boolean;
  what: string;
}

function serialise(message: unknown, what: string): Payload {
  return { data: JSON.stringify(message).replaceAll(DEEP, `${'['.repeat(10_000)}${']'.repeat(10_000)}`), what };
}

/** A well-formed message broken one way: a field set to junk or removed, a key added, or the type changed. */
function mutated(): Payload {
  const message = structuredClone(pick(baseMessages()));
  const path = pick(PATHS);
  let parent: Record<string, unknown> = message;
  for (const key of path.slice(0, -1)) {
    const next = parent[key];
    if (typeof next !== 'object' || next === null) {
      parent[key] = {};
    }
    parent = parent[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1] as string;
  let how: string;
  switch (int(4)) {
    case 0:
      delete parent[last];
      how = `${path.join('.')} removed`;
      break;
    case 1: {
      const key = pick(['__proto__', 'constructor', 'prototype', 'extra', '', '\u0000']);
      parent[key] = junk();
      how = `key ${JSON.stringify(key)} added beside ${path.join('.')}`;
      break;
    }
    case 2:
      message.type = pick(['update', 'complete', 'error', 'pong', 'AUTH', 'auth ', '', 'request\u0000']);
      how = 'an unknown type';
      break;
    default:
      parent[last] = junk();
      how = `junk at ${path.join('.')}`;
  }
  return serialise(message, `${JSON.stringify(message).slice(0, 160)} (${how})`);
}

/** Frames that are not a message at all. */
function garbage(): Payload {
  return pick<() => Payload>([
    () => ({ data: 'not json', what: 'not JSON' }),
    () => ({ data: '', what: 'an empty text frame' }),
    () => ({ data: '{"type":"ping"', what: 'truncated JSON' }),
    () => ({ data: '{"type":"ping"}\u0000', what: 'a NUL after the JSON' }),
    () => ({ data: `\ufeff{"type":"ping"}`, what: 'a byte-order mark' }),
    () => ({ data: controlChars(), what: 'control characters' }),
    () => ({ data: '[{"type":"ping"}]', what: 'an array' }),
    () => ({ data: pick(['null', '1', '"ping"', 'true', '1e999']), what: 'a JSON scalar' }),
    () => ({ data: '{"type":"ping","type":"auth"}', what: 'a duplicate key' }),
    () => ({ data: '{"__proto__":{"type":"ping","polluted":true}}', what: '__proto__ as the message' }),
    () => ({ data: `{"type":"ping","data":${'{"a":'.repeat(40)}1${'}'.repeat(40)}}`, what: 'objects 40 deep' }),
    () => serialise({ type: 'ping', data: DEEP }, 'a ping 10,000 deep'),
    () => ({ data: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), what: 'invalid UTF-8 in a text frame' }),
    () => ({ data: Buffer.from([0, 1, 2, 3]), binary: true, what: 'a binary frame' }),
    () => ({ data: Buffer.from('{"type":"ping"}'), binary: true, what: 'JSON in a binary frame' }),
    () => ({ data: `{"type":"ping","data":"${'x'.repeat(20_000 + int(20_000))}"}`, what: 'a 20-40 KB ping' }),
  ])();
}

const payload = () => (random() < 0.65 ? mutated() : garbage());

// ---- what comes back ---------------------------------------------------------------------------

type Outcome = { message: FeedMessage } | { closed: { code: number; reason: string } };

/** The first answer after message `from` (an error, pong, auth or complete), or the close. */
function answer(client: FeedClient, from: number, what: string): Promise<Outcome> {
  const terminal = (m: FeedMessage) => ['error', 'pong', 'auth', 'complete'].includes(m.type);
  return new Promise((resolve, reject) => {
    const look = () => {
      const message = client.messages.slice(from).find(terminal);
      if (message) finish({ message });
    };
    const onMessage = () => look();
    const timer = setTimeout(() => finish(undefined, new Error(`no answer and no close after ${what}`)), 10_000);
    const finish = (outcome?: Outcome, error?: Error) => {
      clearTimeout(timer);
      client.socket.off('message', onMessage);
      if (error) reject(error);
      else resolve(outcome as Outcome);
    };
    client.socket.on('message', onMessage);
    client.closed.then((closed) => {
      look();
      finish({ closed });
    });
    look();
  });
}

/** How often each answer came (printed at the end, to show what the run reached). */
const seen = new Map<string, number>();

function assertSound(outcome: Outcome, what: string): void {
  const kind =
    'closed' in outcome
      ? `close ${outcome.closed.code}`
      : outcome.message.type === 'error'
        ? `error ${outcome.message.data?.code}`
        : outcome.message.type;
  seen.set(kind, (seen.get(kind) ?? 0) + 1);
  if ('closed' in outcome) {
    assert.ok(DOCUMENTED_CLOSES.has(outcome.closed.code), `close ${JSON.stringify(outcome.closed)} after ${what}`);
    return;
  }
  const { message } = outcome;
  if (message.type === 'complete') completedTokens += message.data.usage.total_tokens;
  if (message.type !== 'error') return;
  const status = ERROR_STATUS[message.data.code as keyof typeof ERROR_STATUS];
  assert.ok(status !== undefined && status < 500, `error ${JSON.stringify(message.data)} after ${what}`);
  assert.equal(typeof message.data.message, 'string');
  assert.ok(message.data.message.length > 0);
}

function send(client: FeedClient, frame: Payload): void {
  client.socket.send(frame.data, { binary: frame.binary ?? false });
}

async function feed(options: { authenticated: boolean }): Promise<FeedClient> {
  const client = await connectFeed(baseUrl);
  clients.push(client);
  if (options.authenticated) {
    client.send({ type: 'auth', data: { token: user.apiKey } });
    assert.equal((await client.next((m) => m.type === 'auth', 'the auth answer')).data.status, 'ok');
  }
  return client;
}

/** The process is fine: nothing unhandled, nothing logged as an error, and a fresh client is served. */
async function assertServing(): Promise<void> {
  assert.deepEqual(crashes, [], 'no unhandled rejection or uncaught exception');
  const errors = h.logs.slice(logsBefore).filter((line) => JSON.parse(line).level >= 50);
  assert.deepEqual(errors, [], 'nothing logged at error level');
  assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
  const client = await feed({ authenticated: true });
  client.send({ type: 'ping', correlationId: 'alive' });
  await client.next((m) => m.type === 'pong' && m.correlationId === 'alive', 'a pong for a fresh client');
  client.close();
}

// ---- the runs ----------------------------------------------------------------------------------

describe(`realtime WebSocket fuzz (seed ${seed})`, () => {
  it('before authentication: every bad message gets an error and a close, or a documented close', async () => {
    for (let i = 0; i < 150; i++) {
      const frame = payload();
      const what = `#${i} ${frame.what}`;
      const client = await feed({ authenticated: false });
      send(client, frame);
      const first = await answer(client, 0, what);
      assertSound(first, what);
      if ('message' in first && first.message.type === 'error') {
        // Garbage before authentication closes; an offset refused next to a good token still opens.
        const next = await answer(client, client.messages.indexOf(first.message) + 1, what);
        assertSound(next, what);
        if ('message' in next) assert.equal(next.message.type, 'auth', what);
      }
      client.close();
    }
    await assertServing();
  });

  it('after authentication: every bad message gets an error, or a documented close', async () => {
    let client = await feed({ authenticated: true });
    for (let i = 0; i < 500; i++) {
      if (client.socket.readyState !== client.socket.OPEN) client = await feed({ authenticated: true });
      const frame = payload();
      const what = `#${i} ${frame.what}`;
      const from = client.messages.length;
      send(client, frame);
      const outcome = await answer(client, from, what);
      assertSound(outcome, what);
    }
    client.close();
    await assertServing();
  });

  it('subprotocol tokens and URL offsets of every shape are refused with a documented close', async () => {
    const tokens = [
      '',
      'x',
      'a'.repeat(5_000),
      'gatehouse.bearer.',
      user.apiKey.slice(0, -1),
      'eyJhbGciOiJub25lIn0.e30.',
    ];
    for (const token of tokens) {
      const client = await connectFeed(baseUrl, { protocols: ['gatehouse.v1', `gatehouse.bearer.${token}`] }).catch(
        () => null, // a handshake refused outright is an answer too
      );
      if (!client) continue;
      clients.push(client);
      assertSound(await answer(client, 0, `bearer ${token.slice(0, 20)}`), 'a bad subprotocol token');
    }
    for (const offset of ['evt_', `evt_${'z'.repeat(26)}`, 'evt_\u0000', 'x'.repeat(3_000), '%00', '../']) {
      const client = await connectFeed(baseUrl, { offset });
      clients.push(client);
      client.send({ type: 'auth', data: { token: user.apiKey } });
      const first = await answer(client, 0, `offset ${JSON.stringify(offset.slice(0, 20))}`);
      assertSound(first, 'a bad offset');
      if ('message' in first && first.message.type === 'error') {
        assert.deepEqual(
          first.message.data.details.fields.map((f: { field: string }) => f.field),
          ['offset'],
        );
      }
      client.close();
    }
    await assertServing();
  });

  it('malformed frames are closed with 1002, 1007 or 1009, before and after authentication', async () => {
    // [what, bytes, close code, also after authentication]
    const frames: [string, Buffer, number, boolean][] = [
      ['an unmasked frame', Buffer.from([0x81, 0x02, 0x7b, 0x7d]), 1002, true],
      ['RSV1 without an extension', frame(0xc1, Buffer.from('{}')), 1002, true],
      ['a reserved opcode', frame(0x83, Buffer.from('{}')), 1002, true],
      ['a continuation with no start', frame(0x80, Buffer.from('{}')), 1002, true],
      ['a fragmented ping', frame(0x09, Buffer.from('x')), 1002, true],
      ['a ping over 125 bytes', frame(0x89, Buffer.alloc(126)), 1002, true],
      ['a close with code 999', frame(0x88, Buffer.from([0x03, 0xe7])), 1002, true],
      ['invalid UTF-8', frame(0x81, Buffer.from([0xc3, 0x28])), 1007, true],
      ['a length of 2^53', Buffer.from([0x81, 0xff, 0x00, 0x20, 0, 0, 0, 0, 0, 0]), 1009, true],
      // Before authentication only: after it, 9 KB is well within the bound.
      ['a 9 KB first fragment', frame(0x01, Buffer.alloc(9_000, 0x61)), 1009, false],
    ];
    for (const [what, bytes, code, after] of frames) {
      for (const authenticated of after ? [false, true] : [false]) {
        const phase = authenticated ? 'after' : 'before';
        assert.equal(await rawClose(bytes, authenticated), code, `${what} (${phase} authentication)`);
      }
    }
    await assertServing();
  });

  it('floods: sockets, pings, auth renewals and requests all get their answers or a documented close', async () => {
    // 40 unauthenticated sockets at once, each sending a burst of garbage.
    const anonymous = await Promise.all(Array.from({ length: 40 }, () => feed({ authenticated: false })));
    for (const client of anonymous) for (let i = 0; i < 20; i++) send(client, garbage());
    for (const client of anonymous) assertSound({ closed: await client.closed }, 'a garbage burst');

    const client = await feed({ authenticated: true });
    const from = client.messages.length;
    for (let i = 0; i < 2_000; i++) client.send({ type: 'ping', correlationId: `f${i}` });
    for (let i = 0; i < 50; i++) client.send({ type: 'auth', data: { token: user.apiKey }, correlationId: `a${i}` });
    const ids = Array.from({ length: 20 }, (_, i) => `q${i}`);
    for (const correlationId of ids) {
      client.send({ type: 'request', correlationId, data: { model: 'gpt-test', prompt: `flood ${correlationId}` } });
    }
    for (const correlationId of ids) {
      const done = await client.next(
        (m) => m.correlationId === correlationId && (m.type === 'complete' || m.type === 'error'),
        `the answer to ${correlationId}`,
        30_000,
      );
      assertSound({ message: done }, correlationId);
      if (done.type === 'error') assert.equal(done.data.code, 'rate_limited', JSON.stringify(done.data));
    }
    const answers = client.messages.slice(from);
    assert.equal(answers.filter((m) => m.type === 'pong').length, 2_000, 'a pong for every ping');
    assert.equal(answers.filter((m) => m.type === 'auth' && m.data.status === 'ok').length, 50);
    client.close();
    await assertServing();
  });

  it('nothing is half-written: the budget holds exactly what the completed calls used, and none is left reserved', async () => {
    const usage = await h.request({ method: 'GET', url: '/api/usage', token: user.apiKey });
    assert.equal(usage.status, 200, usage.text);
    assert.equal(usage.body.tokens_reserved, 0);
    assert.equal(usage.body.tokens_used, completedTokens);
    await assertServing();
  });
});

/** A masked frame (RFC 6455 §5.3) with this first byte and payload; the client must mask what it sends. */
function frame(first: number, payload: Buffer): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const length =
    payload.length < 126
      ? Buffer.from([0x80 | payload.length])
      : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] as number)));
  return Buffer.concat([Buffer.from([first]), length, mask, masked]);
}

/**
 * Opens the feed over a plain TCP socket (optionally authenticating with a masked auth frame),
 * writes `bytes`, and resolves with the close code the server sends, or -1 when the server keeps
 * the socket open (it is then closed here).
 */
function rawClose(bytes: Buffer, authenticated: boolean): Promise<number> {
  const port = Number(new URL(baseUrl).port);
  return new Promise((resolve, reject) => {
    const socket: Socket = connectTcp(port, '127.0.0.1', () =>
      socket.write(
        'GET /api/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      ),
    );
    let buffer = Buffer.alloc(0);
    let stage: 'handshake' | 'auth' | 'sent' = 'handshake';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(-1);
    }, 3_000);
    const done = (code: number) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(code);
    };
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (stage === 'handshake') {
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        assert.match(buffer.subarray(0, end).toString(), /^HTTP\/1.1 101/);
        buffer = buffer.subarray(end + 4);
        if (authenticated) {
          stage = 'auth';
          socket.write(frame(0x81, Buffer.from(JSON.stringify({ type: 'auth', data: { token: user.apiKey } }))));
        } else {
          stage = 'sent';
          socket.write(bytes);
        }
      }
      // Server frames are unmasked: [opcode, length(, extended length), payload].
      while (buffer.length >= 2) {
        let length = (buffer[1] as number) & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (buffer.length < 4) return;
          length = buffer.readUInt16BE(2);
          offset = 4;
        }
        if (buffer.length < offset + length) return;
        const opcode = (buffer[0] as number) & 0x0f;
        const body = buffer.subarray(offset, offset + length);
        buffer = buffer.subarray(offset + length);
        if (opcode === 0x8) return done(body.length >= 2 ? body.readUInt16BE(0) : 1005);
        if (stage === 'auth' && opcode === 0x1 && JSON.parse(String(body)).type === 'auth') {
          stage = 'sent';
          socket.write(bytes);
        }
      }
    });
  });
}
