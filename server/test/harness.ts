import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { buildApp, type GatehouseApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { type DbOptions, migrateToLatest } from '../src/db/index.js';
import { closeDeps, createDeps, type Deps } from '../src/deps.js';
import { register } from '../src/features/accounts/accounts.service.js';
import { ensureDefaultTenant } from '../src/features/tenants/tenants.service.js';
import { SYSTEM_ACTOR } from '../src/http/principal.js';
import { createLogger } from '../src/logger.js';

/**
 * One app per test file on a real database: in-memory SQLite by default, a fresh PostgreSQL
 * schema when TEST_DATABASE_URL is set, Redis when TEST_REDIS_URL is. Tests isolate themselves
 * with a fresh tenant each (`h.tenant()`), so nothing is truncated between tests.
 */
export interface Harness {
  app: GatehouseApp;
  deps: Deps;
  /** Test clock: real time plus whatever `advance` added. */
  clock: { now(): number; advance(ms: number): void };
  /**
   * Moves the clock for one test and moves it back when that test ends, so later tests (and the
   * operator's 15-minute token) run at real time again.
   */
  clockFor(test: { after(fn: () => void): void }): (ms: number) => void;
  operator: { token: string };
  /** Every log line written so far (level follows TEST_LOG_LEVEL, default debug). */
  logs: string[];
  request(options: RequestOptions): Promise<TestResponse>;
  tenant(): Promise<TestTenant>;
  /**
   * Another app instance on the same database (and Redis, when set), as a second replica would
   * run. PostgreSQL only: SQLite mode is one instance by design.
   */
  secondInstance(): Promise<Instance>;
  /**
   * Another instance on the same database in a child process of its own (test/instance-process.ts),
   * to be killed for real. PostgreSQL only.
   */
  spawnInstance(): Promise<SpawnedInstance>;
  close(): Promise<void>;
}

/** An instance in its own process: its base URL, and SIGKILL. */
export interface SpawnedInstance {
  url: string;
  /** SIGKILL: the process ends at once, without any of its shutdown work. */
  kill(): Promise<void>;
}

export interface RequestOptions {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';
  url: string;
  token?: string;
  tenant?: string;
  body?: unknown;
  form?: Record<string, string>;
  ip?: string;
  headers?: Record<string, string>;
}

export interface TestResponse {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever shape the route answers.
  body: any;
  text: string;
}

export interface TestUser {
  id: string;
  email: string;
  password: string;
  accessToken: string;
  refreshToken: string;
  apiKey: string;
  apiKeyId: string;
}

export interface TestTenant {
  id: string;
  publishableKey: string;
  /** Registers a user in this tenant through the API. */
  user(options?: { email?: string; password?: string; name?: string }): Promise<TestUser>;
  /** A user promoted to tenant admin by the operator. */
  admin(): Promise<TestUser>;
  /** A fresh tenant service key (secret). */
  serviceKey(): Promise<string>;
  /** Puts a user on a new plan with these fields (as POST /api/admin/plans takes them); returns the plan. */
  putOnPlan(userId: string, plan: Record<string, unknown>): Promise<{ name: string; [field: string]: unknown }>;
  /** POST /api/auth/login in this tenant. */
  login(
    credentials: { email: string; password: string },
    options?: { ip?: string; headers?: Record<string, string> },
  ): Promise<TestResponse>;
}

/** One app on the harness's database: the first, or another instance sharing it (and Redis). */
export interface Instance {
  app: GatehouseApp;
  deps: Deps;
  request(options: RequestOptions): Promise<TestResponse>;
}

function requester(app: GatehouseApp) {
  return async (options: RequestOptions): Promise<TestResponse> => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.tenant) headers['x-gatehouse-tenant'] = options.tenant;
    let payload: string | object | undefined;
    if (options.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(options.form).toString();
    } else if (options.body !== undefined) {
      payload = options.body as object;
    }
    const response = await app.inject({
      method: options.method,
      url: options.url,
      headers,
      remoteAddress: options.ip ?? '127.0.0.1',
      payload,
    });
    let body: unknown;
    try {
      body = response.body ? JSON.parse(response.body) : undefined;
    } catch {
      body = undefined;
    }
    return { status: response.statusCode, headers: response.headers, body, text: response.body };
  };
}

export const STRONG_PASSWORD = 'correct horse battery staple';

/** Starts `app` on a free loopback port (for clients that need a real socket); returns its base URL. */
export async function listen(app: GatehouseApp): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as import('node:net').AddressInfo).port}`;
}

/** The fields a 400 names (`error.details.fields[].field`). */
export function fieldsOf(res: TestResponse): string[] {
  return (res.body?.error?.details?.fields ?? []).map((f: { field: string }) => f.field);
}

export async function createHarness(
  env: Record<string, string> = {},
  options: {
    operator?: boolean /** A PostgreSQL of the test's own instead of TEST_DATABASE_URL. */;
    databaseUrl?: string;
  } = {},
): Promise<Harness> {
  let offset = 0;
  const clock = {
    now: () => Date.now() + offset,
    advance: (ms: number) => {
      offset += ms;
    },
  };
  const configEnv = {
    NODE_ENV: 'test',
    PUBLIC_URL: 'http://gatehouse.test',
    // Cheap argon2 so the suite stays fast; the real parameters are measured in the bench.
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_ITERATIONS: '1',
    HASH_QUEUE_MAX: '10000',
    // Every test signs its users up from 127.0.0.1; the sign-up limit has its own test.
    SIGNUP_LIMIT_PER_IP: '1000000',
    REDIS_URL: process.env.TEST_REDIS_URL,
    ...env,
  };
  const config = loadConfig(configEnv);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'debug', sink);

  let dropSchema: (() => Promise<void>) | undefined;
  let dbOptions: DbOptions = { dialect: 'sqlite', filename: ':memory:' };
  const pgUrl = options.databaseUrl ?? process.env.TEST_DATABASE_URL;
  if (pgUrl) {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`create schema ${schema}`);
    await admin.end();
    dbOptions = { dialect: 'postgres', connectionString: pgUrl, schema, max: 20, timeouts: config.database };
    dropSchema = async () => {
      const client = new pg.Client({ connectionString: pgUrl });
      await client.connect();
      await client.query(`drop schema ${schema} cascade`);
      await client.end();
    };
  }

  const masterKey = randomBytes(32);
  const limiterNamespace = `test_${randomBytes(6).toString('hex')}`;
  const instances: Instance[] = [];
  const startInstance = async (): Promise<Instance> => {
    const deps = await createDeps({ config, log, masterKey, dbOptions, clock, limiterNamespace });
    let app: GatehouseApp;
    try {
      await migrateWhileOthersDropSchemas(deps.db);
      await deps.keyring.load();
      app = await buildApp(deps);
      await app.ready();
    } catch (error) {
      // Pools and sockets left open would keep the test process alive after the failure.
      await closeDeps(deps).catch(() => {});
      throw error;
    }
    const instance = { app, deps, request: requester(app) };
    instances.push(instance);
    return instance;
  };

  const children: ChildProcess[] = [];
  const spawnInstance = async (): Promise<SpawnedInstance> => {
    if (dbOptions.dialect !== 'postgres') throw new Error('a spawned instance needs PostgreSQL (TEST_DATABASE_URL)');
    const spec = { env: configEnv, dbOptions, masterKey: masterKey.toString('hex'), limiterNamespace };
    const child = spawn(
      process.execPath,
      [
        '--conditions=gatehouse-source',
        '--import',
        'tsx',
        fileURLToPath(new URL('instance-process.ts', import.meta.url)),
      ],
      { env: { ...process.env, GATEHOUSE_TEST_INSTANCE: JSON.stringify(spec) }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    const exited = once(child, 'exit');
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const first = await Promise.race([once(lines, 'line'), exited.then(() => [undefined])]);
    lines.close();
    if (typeof first[0] !== 'string') throw new Error('the spawned instance exited before it listened');
    const { url } = JSON.parse(first[0]) as { url: string };
    return {
      url,
      async kill() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
      },
    };
  };

  const { deps, app, request } = await startInstance();
  const defaultTenant = await ensureDefaultTenant(deps, SYSTEM_ACTOR);

  const operator =
    options.operator === false
      ? { access_token: '' }
      : await register(
          deps,
          defaultTenant,
          { email: `operator-${randomBytes(4).toString('hex')}@example.com`, password: STRONG_PASSWORD },
          { ip: null, userAgent: 'harness' },
          'operator',
        );

  const expectStatus = (response: TestResponse, status: number, what: string) => {
    if (response.status !== status)
      throw new Error(`${what}: expected ${status}, got ${response.status} ${response.text}`);
    return response.body;
  };

  const tenant = async (): Promise<TestTenant> => {
    const created = expectStatus(
      await request({
        method: 'POST',
        url: '/api/admin/tenants',
        token: operator.access_token,
        body: { name: `Test ${randomBytes(4).toString('hex')}` },
      }),
      201,
      'create tenant',
    );
    const user: TestTenant['user'] = async (options = {}) => {
      const email = options.email ?? `user-${randomBytes(5).toString('hex')}@example.com`;
      const password = options.password ?? STRONG_PASSWORD;
      const body = expectStatus(
        await request({
          method: 'POST',
          url: '/api/auth/register',
          tenant: created.publishable_key,
          body: { email, password, ...(options.name && { name: options.name }) },
        }),
        201,
        'register',
      );
      return {
        id: body.user.id,
        email,
        password,
        accessToken: body.access_token,
        refreshToken: body.refresh_token,
        apiKey: body.api_key.key,
        apiKeyId: body.api_key.id,
      };
    };
    return {
      id: created.id,
      publishableKey: created.publishable_key,
      user,
      login: ({ email, password }, options = {}) =>
        request({
          method: 'POST',
          url: '/api/auth/login',
          tenant: created.publishable_key,
          body: { email, password },
          ...options,
        }),
      async admin() {
        const admin = await user();
        expectStatus(
          await request({
            method: 'PATCH',
            url: `/api/admin/users/${admin.id}`,
            token: operator.access_token,
            tenant: created.id,
            body: { role: 'admin' },
          }),
          200,
          'promote admin',
        );
        return admin;
      },
      async putOnPlan(userId, fields) {
        const asOperator = { token: operator.access_token, tenant: created.id };
        const name = `plan-${randomBytes(4).toString('hex')}`;
        const plan = expectStatus(
          await request({ method: 'POST', url: '/api/admin/plans', ...asOperator, body: { name, ...fields } }),
          201,
          'create plan',
        );
        expectStatus(
          await request({ method: 'PUT', url: `/api/admin/users/${userId}/plan`, ...asOperator, body: { plan: name } }),
          200,
          'assign plan',
        );
        return plan;
      },
      async serviceKey() {
        const body = expectStatus(
          await request({
            method: 'POST',
            url: '/api/admin/service-keys',
            token: operator.access_token,
            tenant: created.id,
            body: { name: 'backend' },
          }),
          201,
          'create service key',
        );
        return body.key;
      },
    };
  };

  return {
    app,
    deps,
    clock,
    clockFor(test) {
      let moved = 0;
      test.after(() => clock.advance(-moved));
      return (ms) => {
        moved += ms;
        clock.advance(ms);
      };
    },
    operator: { token: operator.access_token },
    logs,
    request,
    tenant,
    async secondInstance() {
      if (dbOptions.dialect !== 'postgres') throw new Error('a second instance needs PostgreSQL (TEST_DATABASE_URL)');
      return startInstance();
    },
    spawnInstance,
    async close() {
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      for (const instance of instances.reverse()) {
        await instance.app.close();
        await closeDeps(instance.deps);
      }
      await dropSchema?.();
    },
  };
}

/**
 * Kysely's migrator lists the tables of every schema it may use (has_schema_privilege), which
 * fails with 3F000 when another test run drops its schema at that moment; this run's own schema
 * is not involved, so the migration is simply tried again.
 */
async function migrateWhileOthersDropSchemas(db: Deps['db']): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await migrateToLatest(db);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '3F000' || attempt >= 5) throw error;
    }
  }
}
