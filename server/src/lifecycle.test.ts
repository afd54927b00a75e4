import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import SQLite from 'better-sqlite3';
import { type FakeLlm, startFakeLlm } from '../test/fake-llm.js';

// `gatehouse serve` as a real child process on SQLite, signalled as an orchestrator would
// (docs/operations.md, "Shutdown" and "Crashes").

const MAIN = new URL('./main.ts', import.meta.url).pathname;
const METRICS_TOKEN = 'lifecycle-test-metrics-token';
const PASSWORD = 'correct horse battery staple';

/**
 * A deliberate programming error on SIGUSR2, loaded before main.ts as an outside fault: a
 * promise rejected with nobody to catch it, or (GATEHOUSE_TEST_FAULT=throw) an exception thrown
 * from a timer.
 */
const FAULT = `data:text/javascript,${encodeURIComponent(`
  process.on('SIGUSR2', () => {
    if (process.env.GATEHOUSE_TEST_FAULT === 'throw') setImmediate(() => { throw new Error('deliberate exception'); });
    else Promise.reject(new Error('deliberate rejection'));
  });
`)}`;

interface Server {
  url: string;
  child: ChildProcess;
  dataDir: string;
  logs: Record<string, unknown>[];
  stderr: string;
  exited: Promise<number | null>;
}

const servers: Server[] = [];
const fakes: FakeLlm[] = [];
after(async () => {
  for (const server of servers) {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    rmSync(server.dataDir, { recursive: true, force: true });
  }
  for (const fake of fakes) await fake.close();
});

async function startServer(env: Record<string, string> = {}): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-serve-'));
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', FAULT, MAIN, 'serve'], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir,
      GATEHOUSE_MASTER_KEY: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'info',
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_ITERATIONS: '1',
      METRICS_TOKEN,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const server: Server = { url: '', child, dataDir, logs: [], stderr: '', exited };
  servers.push(server);
  child.stderr?.on('data', (chunk) => {
    server.stderr += String(chunk);
  });
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        server.logs.push(entry);
        const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(String(entry.msg))?.[1];
        if (url) resolve(url);
      } catch {
        // not a log line
      }
    });
    exited.then((code) => reject(new Error(`gatehouse exited (${code}) before listening: ${server.stderr}`)));
  });
  server.url = await listening;
  return server;
}

/** JSON over HTTP; `agent` keeps the connection open afterwards. */
async function call(
  server: Server,
  method: string,
  path: string,
  options: { body?: unknown; token?: string; agent?: Agent } = {},
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever shape the route answers.
): Promise<{ status: number; body: any }> {
  const response = await fetchWith(server, method, path, options);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

function fetchWith(
  server: Server,
  method: string,
  path: string,
  options: { body?: unknown; token?: string; agent?: Agent },
): Promise<{ status: number; text(): Promise<string>; stream: import('node:http').IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = httpRequest(
      `${server.url}${path}`,
      {
        method,
        agent: options.agent,
        headers: {
          ...(payload && { 'content-type': 'application/json' }),
          ...(options.token && { authorization: `Bearer ${options.token}` }),
        },
      },
      (res) => {
        resolve({
          status: res.statusCode ?? 0,
          stream: res,
          text: async () => {
            let text = '';
            for await (const chunk of res) text += String(chunk);
            return text;
          },
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function register(server: Server, agent?: Agent) {
  const email = `user-${randomBytes(4).toString('hex')}@example.com`;
  const res = await call(server, 'POST', '/api/auth/register', { body: { email, password: PASSWORD }, agent });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { id: res.body.user.id as string, token: res.body.access_token as string, apiKey: res.body.api_key.key };
}

/** What the database holds of a user's usage, read after the process exited. */
function usageOf(server: Server, userId: string): { requests: number; llm_requests: number } {
  const db = new SQLite(join(server.dataDir, 'gatehouse.db'), { readonly: true });
  try {
    return db
      .prepare(
        `select coalesce(sum(requests), 0) as requests, coalesce(sum(llm_requests), 0) as llm_requests
         from usage_rollups where user_id = ? and granularity = 'hour'`,
      )
      .get(userId) as { requests: number; llm_requests: number };
  } finally {
    db.close();
  }
}

async function fake(): Promise<FakeLlm> {
  const upstream = await startFakeLlm();
  fakes.push(upstream);
  return upstream;
}

/** A server whose default tenant's `gpt-test` is served by `upstream`, and a user of it. */
async function servedBy(upstream: FakeLlm, env: Record<string, string>) {
  const server = await startServer({ ...env, OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' });
  // Printed on stderr just after listening.
  for (let i = 0; i < 100 && !server.stderr.includes('"token"'); i++) await new Promise((r) => setTimeout(r, 50));
  const setupToken = /"token":"([^"]+)"/.exec(server.stderr)?.[1];
  assert.ok(setupToken, 'the setup token is printed');
  const operator = await call(server, 'POST', '/api/setup', {
    body: { token: setupToken, email: 'operator@example.com', password: PASSWORD },
  });
  assert.equal(operator.status, 201, JSON.stringify(operator.body));
  const provider = await call(server, 'POST', '/api/admin/llm/providers', {
    token: operator.body.access_token,
    body: { name: 'fake', base_url: upstream.url, api_key: 'sk-fake', models: ['gpt-test'] },
  });
  assert.equal(provider.status, 201, JSON.stringify(provider.body));
  return { server, user: await register(server) };
}

/** Streams a chat completion, calling `onFirst` once its first event arrived; resolves with all it received. */
async function streamUntil(
  server: Server,
  user: { apiKey: string },
  agent: Agent | undefined,
  onFirst: () => void,
): Promise<string> {
  const response = await fetchWith(server, 'POST', '/api/llm/v1/chat/completions', {
    token: user.apiKey,
    agent,
    body: { model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'Say hello' }] },
  });
  assert.equal(response.status, 200);
  let text = '';
  let first = true;
  await new Promise<void>((resolve) => {
    response.stream.on('data', (chunk) => {
      text += String(chunk);
      if (first) onFirst();
      first = false;
    });
    response.stream.on('end', resolve);
    response.stream.on('error', () => resolve());
    response.stream.on('close', resolve);
  });
  return text;
}

const logged = (server: Server, message: string) => server.logs.filter((entry) => entry.msg === message);

describe('gatehouse serve: shutdown and crashes', { timeout: 120_000 }, () => {
  it('SIGTERM with keep-alive clients connected: the stream in flight finishes, the process exits 0 and the last usage is written', async () => {
    const { server, user } = await servedBy(await fake(), { SHUTDOWN_TIMEOUT: '30s' });
    const agent = new Agent({ keepAlive: true });
    for (let i = 0; i < 3; i++) {
      assert.equal((await call(server, 'GET', '/api/auth/me', { token: user.token, agent })).status, 200);
    }
    // That connection now idles; the stream below comes on a second one and is in flight at SIGTERM.
    const text = await streamUntil(server, user, agent, () => server.child.kill('SIGTERM'));
    assert.match(text, /data: \[DONE\]\n\n$/, 'the stream in flight finished');
    const code = await server.exited;
    agent.destroy();
    assert.equal(code, 0, server.stderr);
    assert.deepEqual(
      logged(server, 'shut down').map((entry) => entry.clean),
      [true],
    );
    assert.deepEqual(usageOf(server, user.id), { requests: 4, llm_requests: 1 }, 'every call counted and written');
  });

  it('a stream still running at the deadline ends with an SSE error event, its usage is written, and the exit is 0', async () => {
    const upstream = await fake();
    const { server, user } = await servedBy(upstream, { SHUTDOWN_TIMEOUT: '500ms' });
    upstream.next('hang_after_first');
    const text = await streamUntil(server, user, undefined, () => server.child.kill('SIGTERM'));
    assert.equal(await server.exited, 0, server.stderr);
    assert.match(text, /data: \{"error":\{[^\n]*"code":"server_shutting_down"/);
    assert.doesNotMatch(text, /\[DONE\]/, 'never a clean finish');
    assert.equal(usageOf(server, user.id).llm_requests, 1, 'the cut call is recorded');
  });

  it('an unhandled rejection is logged and counted, and the process keeps serving', async () => {
    const server = await startServer();
    server.child.kill('SIGUSR2');
    let metrics = '';
    for (let i = 0; i < 100 && !/gatehouse_unhandled_rejections_total 1/.test(metrics); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      metrics = await (await fetchWith(server, 'GET', '/metrics', { token: METRICS_TOKEN })).text();
    }
    assert.match(metrics, /gatehouse_unhandled_rejections_total 1/);
    assert.equal((await call(server, 'GET', '/healthz')).status, 200);
    assert.equal(logged(server, 'unhandled promise rejection (the process keeps serving)').length, 1);
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  });

  it('an uncaught exception is logged fatal and shuts down gracefully with exit code 1', async () => {
    const server = await startServer({ GATEHOUSE_TEST_FAULT: 'throw' });
    const user = await register(server);
    assert.equal((await call(server, 'GET', '/api/auth/me', { token: user.token })).status, 200);
    server.child.kill('SIGUSR2');
    assert.equal(await server.exited, 1);
    assert.equal(logged(server, 'uncaught exception: shutting down').length, 1);
    assert.equal(logged(server, 'shut down').length, 1, 'the graceful path ran');
    assert.equal(usageOf(server, user.id).requests, 1, 'usage written on the way out');
  });
});
