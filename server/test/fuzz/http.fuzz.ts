import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { subscribe } from 'node:diagnostics_channel';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { request } from 'undici';
import { type FakeLlm, startFakeLlm } from '../fake-llm.js';
import { type FakeOidc, startFakeOidc } from '../fake-oidc.js';
import { createHarness, type Harness, listen } from '../harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../webhook-receiver.js';
import { type Case, casesFor, type Operation } from './cases.js';
import { createRng, routeSeed, type Schema } from './inputs.js';
import { createWorld, pathParam } from './world.js';

// The HTTP fuzz suite (npm run test:fuzz): every route of the OpenAPI document, with valid
// credentials and real ids of a fresh tenant's objects, called with its valid request and with
// that request broken in the known ways (cases.ts). Asserts: no 5xx, the process alive (no
// unhandled rejection or exception, /healthz answering), and nothing half-written (a refused
// write leaves every table of the tenant as it was). Seeded: FUZZ_SEED replays a run, FUZZ_CASES
// sets the cases per route, FUZZ_ROUTES keeps only routes whose "METHOD /path" contains it.
// Loopback only: every URL a case sends points at a local fake, and every outbound connection is
// checked to stay on loopback.

const SEED = Number(process.env.FUZZ_SEED ?? randomInt(2 ** 31));
const CASES = Number(process.env.FUZZ_CASES ?? 24);
const ONLY = process.env.FUZZ_ROUTES;
process.stdout.write(`# fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED}), ${CASES} cases per route\n`);

/** Tables a refused request must leave as they were (audit, usage and counters may record it). */
const COUNTED = [
  'users',
  'sessions',
  'api_keys',
  'service_keys',
  'plans',
  'events',
  'llm_providers',
  'llm_routes',
  'llm_prices',
  'connections',
  'oauth_providers',
  'oauth_states',
  'oauth_codes',
  'user_identities',
  'device_authorizations',
  'webhook_endpoints',
  'webhook_deliveries',
  'token_reservations',
] as const;

let h: Harness;
let base: string;
let llm: FakeLlm;
let oidc: FakeOidc;
let receiver: WebhookReceiver;
let operations: Operation[] = [];
let components: Record<string, Schema> = {};
const outboundHosts = new Set<string>();
const crashes: unknown[] = [];
const onCrash = (error: unknown) => crashes.push(error);

before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8', WEBHOOK_TIMEOUT: '2s', LOG_LEVEL: 'silent' });
  base = await listen(h.app);
  [llm, oidc, receiver] = await Promise.all([startFakeLlm(), startFakeOidc(), startWebhookReceiver()]);
  // Every connection undici opens (Gatehouse's outbound agent and this suite's client).
  subscribe('undici:client:beforeConnect', (message) => {
    outboundHosts.add(String((message as { connectParams: { hostname: string } }).connectParams.hostname));
  });
  process.on('unhandledRejection', onCrash);
  process.on('uncaughtException', onCrash);
  const doc = h.app.swagger() as unknown as {
    paths: Record<string, Record<string, Schema>>;
    components?: { schemas?: Record<string, Schema> };
  };
  components = doc.components?.schemas ?? {};
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const url = path.replace(/\{(\w+)\}/g, ':$1');
      const access = h.app.accessTable.find((a) => a.method === method.toUpperCase() && a.url === url);
      if (!access) throw new Error(`${method} ${path} is in the OpenAPI document but not in the access table`);
      operations.push({
        method: method.toUpperCase(),
        path,
        parameters: op.parameters ?? [],
        body: op.requestBody?.content?.['application/json']?.schema,
        auth: access.auth,
      });
    }
  }
  if (ONLY) operations = operations.filter((op) => `${op.method} ${op.path}`.includes(ONLY));
});

after(async () => {
  process.off('unhandledRejection', onCrash);
  process.off('uncaughtException', onCrash);
  await h.close();
  await Promise.all([llm.close(), oidc.close(), receiver.close()]);
});

/** Row counts of the tenant's tables (and of tenants), in one statement. */
async function countRows(tenantId: string): Promise<Record<string, number>> {
  const columns = COUNTED.map(
    (table) => sql`(select count(*) from ${sql.table(table)} where tenant_id = ${tenantId}) as ${sql.ref(table)}`,
  );
  const result = await sql<
    Record<string, number>
  >`select ${sql.join(columns)}, (select count(*) from tenants) as tenants`.execute(h.deps.db.kysely);
  return Object.fromEntries(Object.entries(result.rows[0]).map(([k, v]) => [k, Number(v)]));
}

interface Answer {
  status: number;
  text: string;
}

/** Sends a case over a real socket (or through inject for what no client can send); reads the answer. */
async function send(c: Case): Promise<Answer> {
  if (c.transport === 'inject') {
    const res = await h.app.inject({
      method: c.method as 'GET',
      url: c.url,
      headers: c.headers,
      payload: c.body,
    });
    return { status: res.statusCode, text: res.body };
  }
  try {
    const res = await request(`${base}${c.url}`, {
      method: c.method as 'GET',
      headers: c.headers,
      body: c.body,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    // A stream (SSE) that opened is an answer; it is not read to its end.
    if (String(res.headers['content-type']).startsWith('text/event-stream')) {
      res.body.destroy();
      return { status: res.statusCode, text: '(event stream)' };
    }
    return { status: res.statusCode, text: await res.body.text() };
  } catch (error) {
    const code = (error as { code?: string }).code;
    // undici refuses to send some values (a header it finds invalid): the server never saw them.
    if (code === 'UND_ERR_INVALID_ARG') return send({ ...c, transport: 'inject' });
    throw error;
  }
}

const excerpt = (text: string | undefined, length = 300) =>
  text === undefined ? '' : text.length > length ? `${text.slice(0, length)}… (${text.length} chars)` : text;

const isWrite = (method: string) => method !== 'GET';

describe('HTTP fuzz: every route of the OpenAPI document', () => {
  it('knows the routes', () => {
    assert.ok(operations.length > 0, 'no operations (FUZZ_ROUTES matches none?)');
  });

  // Each route is its own test, created once `before` has read the document.
  it('every route answers every case without a 5xx, stays up, and leaves refused writes unwritten', async (t) => {
    for (const op of operations) {
      const name = `${op.method} ${op.path}`;
      await t.test(name, async () => {
        const rng = createRng(routeSeed(SEED, name));
        const world = await createWorld(h, { llm, oidc, receiver });
        const pathValues = Object.fromEntries(
          op.parameters.filter((p) => p.in === 'path').map((p) => [p.name, pathParam(world, op.path, p.name)]),
        );
        const failures: string[] = [];
        for (const c of casesFor(op, components, world, rng, CASES, pathValues)) {
          const before = isWrite(c.method) ? await countRows(world.tenantId) : undefined;
          let answer: Answer;
          try {
            answer = await send(c);
          } catch (error) {
            failures.push(`${c.what}: no answer (${(error as Error).message})\n    ${describeCase(c)}`);
            continue;
          }
          if (answer.status >= 500) {
            failures.push(`${c.what}: ${answer.status} ${excerpt(answer.text)}\n    ${describeCase(c)}`);
            continue;
          }
          if (before && answer.status >= 400) {
            const now = await countRows(world.tenantId);
            const changed = Object.keys(now).filter((table) => now[table] !== before[table]);
            if (changed.length > 0) {
              failures.push(
                `${c.what}: refused with ${answer.status} but wrote ${changed.map((k) => `${k} ${before[k]}→${now[k]}`).join(', ')}\n    ${describeCase(c)}`,
              );
            }
          }
        }
        const health = await request(`${base}/healthz`);
        await health.body.dump();
        assert.equal(health.statusCode, 200, 'the server still answers');
        assert.deepEqual(crashes.splice(0).map(String), [], 'no unhandled rejection or exception');
        assert.deepEqual(failures, [], `${name} (FUZZ_SEED=${SEED}):\n  ${failures.join('\n  ')}`);
      });
    }
  });

  it('no outbound connection left loopback', () => {
    const away = [...outboundHosts].filter((host) => !/^(127\.|localhost$|\[?::1\]?$)/.test(host));
    assert.deepEqual(away, []);
  });
});

function describeCase(c: Case): string {
  const headers = Object.entries(c.headers)
    .filter(([name]) => name !== 'authorization' || !/^Bearer [\w.-]{20,}$/.test(c.headers[name]))
    .map(([name, value]) => `${name}: ${excerpt(JSON.stringify(value), 80)}`)
    .join('; ');
  return `${c.method} ${excerpt(c.url, 200)} [${c.transport}] {${headers}} ${excerpt(c.body, 300)}`;
}
