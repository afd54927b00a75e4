import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Harness, TestTenant } from './harness.js';

/** How the fake provider answers its next requests (a queue; `ok` once it is empty). */
export type Behaviour =
  | 'ok'
  | 'no_usage'
  | 'fail_500'
  | 'fail_429'
  | 'bad_request'
  | 'stall'
  | 'cut'
  | 'hang_after_first';

export interface FakeLlm {
  /** Base URL to register as a provider (`http://127.0.0.1:<port>/v1`). */
  url: string;
  /** Requests received: the Authorization header and the parsed body. */
  calls: { authorization: string | undefined; body: Record<string, unknown> }[];
  /** Queues behaviours for the next requests. */
  next(...behaviours: Behaviour[]): void;
  /** Forgets behaviours still queued. */
  reset(): void;
  /** What an `ok` answer reports as usage. */
  usage: { prompt_tokens: number; completion_tokens: number };
  /** Requests whose client (Gatehouse) went away before the answer was complete. */
  aborted: number;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

/**
 * A real OpenAI-compatible upstream on loopback (DESIGN: only what leaves the process is replaced,
 * by real local servers): answers chat completions normally, without usage, with 500 or 429, with
 * a 400 of its own, or never.
 */
export async function startFakeLlm(): Promise<FakeLlm> {
  const queue: Behaviour[] = [];
  const calls: FakeLlm['calls'] = [];
  const usage = { prompt_tokens: 11, completion_tokens: 7 };
  const server: Server = createServer(async (request, response) => {
    const body = await readBody(request);
    calls.push({ authorization: request.headers.authorization, body });
    const behaviour = queue.shift() ?? 'ok';
    const send = (status: number, payload: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(payload));
    };
    if (request.url !== '/v1/chat/completions') return send(404, { error: { message: 'not found' } });
    if (behaviour === 'stall') return; // never answers
    if (behaviour === 'fail_500') return send(500, { error: { message: 'upstream exploded', type: 'server_error' } });
    if (behaviour === 'fail_429') return send(429, { error: { message: 'slow down', type: 'rate_limit_error' } });
    if (body.stream === true && behaviour !== 'bad_request') {
      return stream(body, behaviour, request, response);
    }
    if (behaviour === 'bad_request') {
      return send(400, {
        error: { message: 'temperature is out of range', type: 'invalid_request_error', param: 'temperature' },
      });
    }
    send(200, {
      id: 'chatcmpl-fake',
      object: 'chat.completion',
      created: 1_700_000_000,
      model: body.model,
      choices: [
        { index: 0, message: { role: 'assistant', content: 'Hello from the fake provider' }, finish_reason: 'stop' },
      ],
      ...(behaviour === 'ok' && {
        usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
      }),
    });
  });
  const fake = { aborted: 0 };
  /** OpenAI's stream: a role chunk, content chunks a few ms apart, the usage chunk if asked for, [DONE]. */
  const stream = async (
    body: Record<string, unknown>,
    behaviour: Behaviour,
    request: IncomingMessage,
    response: import('node:http').ServerResponse,
  ) => {
    response.on('close', () => {
      if (!response.writableFinished) fake.aborted++;
    });
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1_700_000_000, model: body.model };
    const event = (data: unknown) => response.write(`data: ${JSON.stringify(data)}\n\n`);
    const pause = () => new Promise((resolve) => setTimeout(resolve, 5));
    event({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    const parts = ['Hello', ' from', ' the fake', ' provider'];
    for (const [i, part] of parts.entries()) {
      await pause();
      if (behaviour === 'hang_after_first' && i === 1) return; // never another byte
      if (behaviour === 'cut' && i === 2) {
        request.socket.destroy();
        return;
      }
      event({ ...base, choices: [{ index: 0, delta: { content: part }, finish_reason: null }] });
    }
    event({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    const wantsUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    if (behaviour === 'ok' && wantsUsage) {
      event({ ...base, choices: [], usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } });
    }
    response.end('data: [DONE]\n\n');
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    calls,
    usage,
    get aborted() {
      return fake.aborted;
    },
    next: (...behaviours) => queue.push(...behaviours),
    reset: () => {
      queue.length = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A new tenant whose model `gpt-test` is served by `fake` (provider `fake`, key `sk-fake`). */
export async function tenantServedBy(h: Harness, fake: FakeLlm): Promise<TestTenant> {
  const t = await h.tenant();
  const admin = await t.admin();
  const res = await h.request({
    method: 'POST',
    url: '/api/admin/llm/providers',
    token: admin.accessToken,
    body: { name: 'fake', base_url: fake.url, api_key: 'sk-fake', models: ['gpt-test'] },
  });
  if (res.status !== 201) throw new Error(`adding the fake provider: ${res.status} ${res.text}`);
  return t;
}
