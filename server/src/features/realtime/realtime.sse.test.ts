import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, listen, type TestUser } from '../../../test/harness.js';

// GET /api/events: the realtime feed as server-sent events (the WebSocket is in realtime.test.ts).

let h: Harness;
let baseUrl: string;
before(async () => {
  h = await createHarness();
  baseUrl = await listen(h.app);
});
after(() => h.close());

const createKey = (user: TestUser, name: string) =>
  h.request({ method: 'POST', url: '/api/keys', token: user.accessToken, body: { name } });

describe('GET /api/events (server-sent events)', () => {
  /** Reads SSE events from a response until `count` have arrived. */
  async function readEvents(res: Response, count: number) {
    const events: { id?: string; event?: string; data: string }[] = [];
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    while (events.length < count) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
        const event: { id?: string; event?: string; data: string } = { data: '' };
        for (const line of block.split('\n')) {
          const [field, ...rest] = line.split(':');
          const value = rest.join(':').trimStart();
          if (field === 'id') event.id = value;
          else if (field === 'event') event.event = value;
          else if (field === 'data') event.data += value;
        }
        if (event.data) events.push(event);
      }
    }
    await reader.cancel();
    return events;
  }

  it('serves the same feed, with event ids that Last-Event-ID resumes from', async () => {
    const user = await (await h.tenant()).user();
    const signal = AbortSignal.timeout(5_000); // a test that waits for a missing event fails instead of hanging
    const stream = await fetch(`${baseUrl}/api/events`, {
      headers: { authorization: `Bearer ${user.apiKey}` },
      signal,
    });
    assert.equal(stream.status, 200);
    assert.match(String(stream.headers.get('content-type')), /text\/event-stream/);
    const reading = readEvents(stream, 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await createKey(user, 'sse');
    const [auth, update] = await reading;
    assert.equal(auth.event, 'auth');
    assert.equal(JSON.parse(auth.data).data.user_id, user.id);
    assert.equal(update.event, 'update');
    const event = JSON.parse(update.data).data.event;
    assert.equal(event.type, 'api_key.created');
    assert.equal(update.id, event.id);

    await createKey(user, 'missed');
    const resumed = await fetch(`${baseUrl}/api/events`, {
      headers: { authorization: `Bearer ${user.apiKey}`, 'last-event-id': event.id },
      signal,
    });
    const [again, ...replayed] = await readEvents(resumed, 2);
    assert.equal(JSON.parse(again.data).data.recovered, true);
    assert.ok(replayed.some((e) => JSON.parse(e.data).data.event.data.name === 'missed'));

    const anonymous = await fetch(`${baseUrl}/api/events`);
    assert.equal(anonymous.status, 401);
  });
});
