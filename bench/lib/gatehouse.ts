import { type ChildProcess, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { freePort, startNode, waitForOk } from './procs.js';

export interface Gatehouse {
  child: ChildProcess;
  baseUrl: string;
  setupToken: Promise<string>;
}

/**
 * Starts Gatehouse exactly as `npm start` does (compiled with `npm run build`, then node with the
 * flags of the root package.json's start script), on SQLite in `dataDir` and 127.0.0.1 only.
 * The environment is built from scratch (no DATABASE_URL, REDIS_URL or other
 * settings leak in from the caller) and the working directory is `dataDir`, so no `.env` is read.
 */
export async function startGatehouse(root: string, dataDir: string, log: WriteStream): Promise<Gatehouse> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: baseUrl,
    DATA_DIR: dataDir,
    GATEHOUSE_MASTER_KEY: randomBytes(32).toString('base64'),
    LOG_LEVEL: 'warn',
  };
  const child = startNode(join(root, 'server/dist/main.js'), {
    args: ['serve'],
    env,
    cwd: dataDir,
    nodeArgs: startFlags(root),
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const setupToken = new Promise<string>((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      const match = /\bgst_[A-Za-z0-9_-]+/.exec(seen);
      if (match) {
        child.stderr?.off('data', onData);
        resolve(match[0]);
      }
    };
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`Gatehouse exited (${code}) before printing a setup token`)));
  });
  setupToken.catch(() => {}); // awaited later; avoid an unhandled rejection meanwhile
  await waitForOk(`${baseUrl}/healthz`, child, 60_000);
  return { child, baseUrl, setupToken };
}

/** Builds the server and returns the node flags `npm start` uses, read from the root start script. */
function startFlags(root: string): string[] {
  const build = spawnSync('npm', ['run', 'build', '--workspace', 'server'], { cwd: root, stdio: 'ignore' });
  if (build.status !== 0) throw new Error('npm run build --workspace server failed');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const match = /\bnode ((?:--\S+ )*)server\/dist\/main\.js serve/.exec(pkg.scripts.start);
  if (!match) throw new Error(`cannot read node flags from the start script: ${pkg.scripts.start}`);
  return match[1].trim().split(/\s+/).filter(Boolean);
}

export interface Fixtures {
  email: string;
  password: string;
  /** More accounts (same password), so that overload looks like many people signing in at once. */
  crowd: string[];
  /** A plain user's access JWT, API key (gk_…), and the tenant's service key (gsk_…). */
  accessToken: string;
  apiKey: string;
  serviceKey: string;
}

async function call<T>(baseUrl: string, path: string, body: unknown, status: number, token?: string): Promise<T> {
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== status) throw new Error(`POST ${path}: expected ${status}, got ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

/**
 * Accounts for the overload scenario. The login guard allows 10 attempts in flight or failed per
 * (account, ip); one account hammered from one address is a brute-force pattern, not overload.
 */
const CROWD = 40;

/** Operator via the setup token, a service key in the default tenant, one user and a crowd of others. */
export async function createFixtures(baseUrl: string, setupToken: string): Promise<Fixtures> {
  const password = `bench ${randomBytes(9).toString('base64url')} passphrase`;
  const operator = await call<{ access_token: string }>(
    baseUrl,
    '/api/setup',
    { token: setupToken, email: 'operator@bench.test', password },
    201,
  );
  const service = await call<{ key: string }>(
    baseUrl,
    '/api/admin/service-keys',
    { name: 'bench' },
    201,
    operator.access_token,
  );
  const email = 'user@bench.test';
  const user = await call<{ access_token: string; api_key: { key: string } }>(
    baseUrl,
    '/api/auth/register',
    { email, password },
    201,
  );
  const crowd: string[] = [];
  for (let i = 0; i < CROWD; i++) {
    crowd.push(`crowd${i}@bench.test`);
    await call(baseUrl, '/api/auth/register', { email: crowd[i], password }, 201);
  }
  return { email, password, crowd, accessToken: user.access_token, apiKey: user.api_key.key, serviceKey: service.key };
}
