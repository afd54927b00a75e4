import { type ChildProcess, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { freePort, startNode, stopChild, waitForOk } from './procs.js';

export interface Gatehouse {
  child: ChildProcess;
  baseUrl: string;
  setupToken: Promise<string>;
}

/**
 * What a Gatehouse may be started with besides the defaults: where its database and counters
 * live, and where it may call out to.
 */
export interface StoreEnv {
  /** postgres://…: run on PostgreSQL instead of SQLite in the data directory. */
  DATABASE_URL?: string;
  /** redis://…: keep rate-limit counters in Redis instead of memory. */
  REDIS_URL?: string;
  /** CIDRs outbound calls may reach although not public, e.g. 127.0.0.0/8 for the bench's fake LLM provider. */
  OUTBOUND_ALLOWED_NETWORKS?: string;
}

/**
 * Starts Gatehouse exactly as `npm start` does (compiled with `npm run build`, then node with the
 * flags of the root package.json's start script), on SQLite in `dataDir` and 127.0.0.1 only.
 * The environment is built from scratch (no DATABASE_URL, REDIS_URL or other settings leak in
 * from the caller; `stores` sets them explicitly) and the working directory is `dataDir`, so no
 * `.env` is read.
 */
export async function startGatehouse(
  root: string,
  dataDir: string,
  log: WriteStream,
  stores: StoreEnv = {},
): Promise<Gatehouse> {
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
    // The bench signs its crowd of users up from 127.0.0.1.
    SIGNUP_LIMIT_PER_IP: '1000',
    ...stores,
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
  try {
    await waitForOk(`${baseUrl}/healthz`, child, 60_000);
  } catch (error) {
    await stopChild(child); // one that never answered must not linger (or hold a database) while the bench goes on
    throw error;
  }
  return { child, baseUrl, setupToken };
}

let builtFlags: string[] | undefined;

/**
 * Builds the server and returns the node flags `npm start` uses, read from the root start script.
 * Built once per bench run: later Gatehouses (Redis, PostgreSQL) run the same build.
 */
function startFlags(root: string): string[] {
  if (builtFlags) return builtFlags;
  const build = spawnSync('npm', ['run', 'build', '--workspace', 'server'], { cwd: root, stdio: 'ignore' });
  if (build.status !== 0) throw new Error('npm run build --workspace server failed');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const match = /\bnode ((?:--\S+ )*)server\/dist\/main\.js serve/.exec(pkg.scripts.start);
  if (!match) throw new Error(`cannot read node flags from the start script: ${pkg.scripts.start}`);
  builtFlags = match[1].trim().split(/\s+/).filter(Boolean);
  return builtFlags;
}

export interface Fixtures {
  /** The operator's access JWT (admin API). */
  adminToken: string;
  email: string;
  password: string;
  /** More accounts (same password), so that overload looks like many people signing in at once. */
  crowd: string[];
  /** A plain user's id, access JWT, API key (gk_…) and its id, and the tenant's service key (gsk_…). */
  userId: string;
  accessToken: string;
  apiKey: string;
  apiKeyId: string;
  serviceKey: string;
  /** A second user's API key, on a plan without limits: nothing of theirs is counted. */
  unlimitedApiKey: string;
}

/**
 * The bench user's plan: every limit enforced and counted, none ever reached (the schema's
 * maximum), so scenarios measure the cost of counting and keep answering 200. The default plan
 * (`free`, 100 requests an hour) would answer 429 after the first hundred.
 */
const LIMITED_PLAN = { name: 'bench', requests_per_hour: 1_000_000_000_000 };
/** Omitted limits are unlimited: requests of users on it are not counted at all. */
const UNLIMITED_PLAN = { name: 'unlimited' };

/** One JSON request that must answer `status`; its answer parsed. */
export async function call<T>(
  baseUrl: string,
  method: 'POST' | 'PUT',
  path: string,
  body: unknown,
  status: number,
  token?: string,
): Promise<T> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== status)
    throw new Error(`${method} ${path}: expected ${status}, got ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

/**
 * One GET /api/auth/me: checks it answers 200 and whether a limit was counted (RateLimit-Limit),
 * so a wrong plan shows up before a load run measures 429s or the wrong thing.
 */
async function checkLimit(baseUrl: string, token: string, expected: number | null, who: string): Promise<void> {
  const response = await fetch(`${baseUrl}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } });
  await response.arrayBuffer();
  const limit = response.headers.get('ratelimit-limit');
  if (response.status !== 200 || limit !== (expected === null ? null : String(expected))) {
    throw new Error(`GET /api/auth/me as ${who}: ${response.status}, RateLimit-Limit ${limit}, expected ${expected}`);
  }
}

/**
 * Accounts for the overload scenario. The login guard allows 10 attempts in flight or failed per
 * (account, ip); one account hammered from one address is a brute-force pattern, not overload.
 */
const CROWD = 40;

type Registered = { user: { id: string }; access_token: string; api_key: { id: string; key: string } };

/**
 * Operator via the setup token, a service key in the default tenant, the plans `bench` and
 * `unlimited`, one user on each, and (unless `crowd` is false) a crowd of others for overload.
 */
export async function createFixtures(
  baseUrl: string,
  setupToken: string,
  options: { crowd: boolean } = { crowd: true },
): Promise<Fixtures> {
  const password = `bench ${randomBytes(9).toString('base64url')} passphrase`;
  const operator = await call<{ access_token: string }>(
    baseUrl,
    'POST',
    '/api/setup',
    { token: setupToken, email: 'operator@bench.test', password },
    201,
  );
  const admin = operator.access_token;
  const service = await call<{ key: string }>(
    baseUrl,
    'POST',
    '/api/admin/service-keys',
    { name: 'bench' },
    201,
    admin,
  );
  for (const plan of [LIMITED_PLAN, UNLIMITED_PLAN]) await call(baseUrl, 'POST', '/api/admin/plans', plan, 201, admin);

  const register = (email: string) => call<Registered>(baseUrl, 'POST', '/api/auth/register', { email, password }, 201);
  const email = 'user@bench.test';
  const user = await register(email);
  const unlimited = await register('unlimited@bench.test');
  const assign = (id: string, plan: string) =>
    call(baseUrl, 'PUT', `/api/admin/users/${id}/plan`, { plan }, 200, admin);
  await assign(user.user.id, LIMITED_PLAN.name);
  await assign(unlimited.user.id, UNLIMITED_PLAN.name);
  await checkLimit(baseUrl, user.api_key.key, LIMITED_PLAN.requests_per_hour, 'the bench user (API key)');
  await checkLimit(baseUrl, user.access_token, LIMITED_PLAN.requests_per_hour, 'the bench user (access JWT)');
  await checkLimit(baseUrl, unlimited.api_key.key, null, 'the unlimited user');

  const crowd: string[] = [];
  for (let i = 0; options.crowd && i < CROWD; i++) {
    crowd.push(`crowd${i}@bench.test`);
    await register(crowd[i]);
  }
  return {
    adminToken: admin,
    email,
    password,
    crowd,
    userId: user.user.id,
    accessToken: user.access_token,
    apiKey: user.api_key.key,
    apiKeyId: user.api_key.id,
    serviceKey: service.key,
    unlimitedApiKey: unlimited.api_key.key,
  };
}
