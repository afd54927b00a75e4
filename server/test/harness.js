import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pg from 'pg';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { migrateToLatest } from '../src/db/index.js';
import { closeDeps, createDeps } from '../src/deps.js';
import { register } from '../src/features/accounts/accounts.service.js';
import { ensureDefaultTenant } from '../src/features/tenants/tenants.service.js';
import { SYSTEM_ACTOR } from '../src/http/principal.js';
import { createLogger } from '../src/logger.js';
export const STRONG_PASSWORD = 'correct horse battery staple';
/** The fields a 400 names (`error.details.fields[].field`). */
export function fieldsOf(res) {
  return (res.body?.error?.details?.fields ?? []).map((f) => f.field);
}
export async function createHarness(env = {}, options = {}) {
  let offset = 0;
  const clock = {
    now: () => Date.now() + offset,
    advance: (ms) => {
      offset += ms;
    },
  };
  const config = loadConfig({
    NODE_ENV: 'test',
    PUBLIC_URL: 'http://gatehouse.test',
    // Cheap argon2 so the suite stays fast; the real parameters are measured in the bench.
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_ITERATIONS: '1',
    HASH_QUEUE_MAX: '10000',
    REDIS_URL: process.env.TEST_REDIS_URL,
    ...env,
  });
  const logs = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'debug', sink);
  let dropSchema;
  let dbOptions = { dialect: 'sqlite', filename: ':memory:' };
  const pgUrl = process.env.TEST_DATABASE_URL;
  if (pgUrl) {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`create schema ${schema}`);
    await admin.end();
    dbOptions = { dialect: 'postgres', connectionString: pgUrl, schema, max: 20 };
    dropSchema = async () => {
      const client = new pg.Client({ connectionString: pgUrl });
      await client.connect();
      await client.query(`drop schema ${schema} cascade`);
      await client.end();
    };
  }
  const deps = await createDeps({
    config,
    log,
    masterKey: randomBytes(32),
    dbOptions,
    clock,
    limiterNamespace: `test_${randomBytes(6).toString('hex')}`,
  });
  await migrateToLatest(deps.db);
  await deps.keyring.load();
  const defaultTenant = await ensureDefaultTenant(deps, SYSTEM_ACTOR);
  const app = await buildApp(deps);
  await app.ready();
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
  const request = async (options) => {
    const headers = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.tenant) headers['x-gatehouse-tenant'] = options.tenant;
    let payload;
    if (options.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(options.form).toString();
    } else if (options.body !== undefined) {
      payload = options.body;
    }
    const response = await app.inject({
      method: options.method,
      url: options.url,
      headers,
      remoteAddress: options.ip ?? '127.0.0.1',
      payload,
    });
    let body;
    try {
      body = response.body ? JSON.parse(response.body) : undefined;
    } catch {
      body = undefined;
    }
    return { status: response.statusCode, headers: response.headers, body, text: response.body };
  };
  const expectStatus = (response, status, what) => {
    if (response.status !== status)
      throw new Error(`${what}: expected ${status}, got ${response.status} ${response.text}`);
    return response.body;
  };
  const tenant = async () => {
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
    const user = async (options = {}) => {
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
    async close() {
      await app.close();
      await closeDeps(deps);
      await dropSchema?.();
    },
  };
}
//# sourceMappingURL=harness.js.map
