import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness, listen } from '../../test/harness.js';

// REQUEST_TIMEOUT bounds how long a request may take to arrive (ADR 0015); 1 s here.
let h: Harness;
let base: URL;
before(async () => {
  h = await createHarness({ REQUEST_TIMEOUT: '1s' });
  base = new URL(await listen(h.app));
});
after(() => h.close());

/**
 * Sends the headers of a POST promising `length` bytes, then one byte every `everyMs` until the
 * server closes the socket; resolves with what it answered and how many body bytes went out.
 */
function trickle(length: number, everyMs: number): Promise<{ answer: string; sent: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(base.port), base.hostname);
    let answer = '';
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    socket.on('connect', () => {
      socket.write(
        `POST /api/auth/login HTTP/1.1\r\nHost: ${base.host}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`,
      );
      timer = setInterval(() => {
        if (sent < length && socket.writable) {
          socket.write(' ');
          sent++;
        }
      }, everyMs);
    });
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('error', () => {}); // a reset after the 408 is the server closing too
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ answer, sent });
    });
    socket.on('timeout', () => reject(new Error('no close')));
  });
}

describe('REQUEST_TIMEOUT', () => {
  it('408 and the socket closed when a body trickles in one byte at a time past the bound', async () => {
    // At a byte per 100 ms the 200-byte body would take 20 s; the bound is 1 s.
    const { answer, sent } = await trickle(200, 100);
    assert.match(answer, /^HTTP\/1\.1 408 /, answer);
    assert.ok(sent < 200, `closed before the body was complete (${sent} of 200 bytes sent)`);
  });

  it('an answer streamed for longer than the bound is not cut: an SSE feed still delivers after 3 s', async () => {
    const user = await (await h.tenant()).user();
    const stream = await fetch(new URL('/api/events', base), {
      headers: { authorization: `Bearer ${user.apiKey}` },
      signal: AbortSignal.timeout(10_000), // fails instead of hanging if the event never comes
    });
    assert.equal(stream.status, 200);
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    // Three request timeouts, so Node's connection check has run several times meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const created = await h.request({ method: 'POST', url: '/api/keys', token: user.accessToken, body: { name: 'x' } });
    assert.equal(created.status, 201, created.text);
    let text = '';
    while (!text.includes('api_key.created')) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the stream ended early: ${text}`);
      text += Buffer.from(value).toString('utf8');
    }
    await reader.cancel();
  });
});
