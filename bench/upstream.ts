// The fake LLM provider of the gateway scenarios: a lean node:http server (no framework) speaking
// OpenAI's POST /v1/chat/completions, so the bench measures Gatehouse and not a real provider.
// Settings from the environment: PORT; CHUNKS content chunks per stream, CHUNK_INTERVAL_MS apart;
// QUICK_MODEL, a model name whose streams send the same chunks without waiting (for time to first
// byte, where only the first chunk matters and a paced stream would only make the run longer).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

const port = Number(process.env.PORT);
const chunks = Number(process.env.CHUNKS ?? 10);
const intervalMs = Number(process.env.CHUNK_INTERVAL_MS ?? 20);
const quickModel = process.env.QUICK_MODEL ?? 'bench-model-quick';
const API_KEY = 'sk-bench';
const CONTENT = 'Hello from the bench upstream';
const USAGE = { prompt_tokens: 9, completion_tokens: 6, total_tokens: 15 };

interface Body {
  model?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

let sequence = 0;

function completion(res: ServerResponse, model: string): void {
  json(res, 200, {
    id: `chatcmpl-bench-${++sequence}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: CONTENT }, finish_reason: 'stop' }],
    usage: USAGE,
  });
}

/**
 * Role chunk at once (what time to first byte measures), then CHUNKS content chunks each
 * CHUNK_INTERVAL_MS after the one before (0 for the quick model), then the usage chunk if asked
 * for, then [DONE]. Each chunk is one write: node sends it as it is written.
 */
function stream(res: ServerResponse, body: Body, model: string): void {
  const id = `chatcmpl-bench-${++sequence}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choices: unknown[], usage?: unknown) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...(usage ? { usage } : {}) })}\n\n`;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
  const words = CONTENT.split(' ');
  const wait = model === quickModel ? 0 : intervalMs;
  let sent = 0;
  let closed = false;
  res.on('close', () => {
    closed = true;
  });
  const next = () => {
    if (closed) return;
    if (sent < chunks) {
      const last = sent === chunks - 1;
      const content = `${words[sent % words.length]}${last ? '' : ' '}`;
      res.write(chunk([{ index: 0, delta: { content }, finish_reason: last ? 'stop' : null }]));
      sent++;
      schedule();
      return;
    }
    if (body.stream_options?.include_usage) res.write(chunk([], USAGE));
    res.end('data: [DONE]\n\n');
  };
  // setImmediate for the quick model: the role chunk still leaves alone, in its own write.
  const schedule = () => (wait > 0 ? setTimeout(next, wait) : setImmediate(next));
  schedule();
}

/** The answer to one request, its body read. */
function handle(req: IncomingMessage, res: ServerResponse, text: string): void {
  if (req.method === 'GET' && req.url === '/healthz') {
    json(res, 200, { ok: true });
  } else if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    json(res, 404, { error: { message: 'not found', type: 'invalid_request_error' } });
  } else if (req.headers.authorization !== `Bearer ${API_KEY}`) {
    json(res, 401, { error: { message: 'bad key', type: 'invalid_request_error' } });
  } else {
    let body: Body | null = null;
    try {
      body = JSON.parse(text) as Body;
    } catch {
      json(res, 400, { error: { message: 'invalid JSON', type: 'invalid_request_error' } });
    }
    if (body === null) return;
    const model = body.model ?? 'bench-model';
    if (body.stream === true) stream(res, body, model);
    else completion(res, model);
  }
}

const server = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (part: Buffer) => parts.push(part));
  req.on('end', () => handle(req, res, Buffer.concat(parts).toString('utf8')));
});
// Keep-alive: connections from Gatehouse and the clients stay open between runs.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, '127.0.0.1');

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
