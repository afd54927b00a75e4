import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, fieldsOf, type Harness, type TestTenant } from '../../../test/harness.js';
import { MAX_ENDPOINTS_PER_TENANT, secretAad } from './webhooks.service.js';

// Fan-out sizes: thousands of endpoints or replayed events must not break a statement (SQLite
// binds at most 32,766 parameters), a tenant's endpoints are capped, and replay stays within an
// endpoint's lifetime.

let h: Harness;
before(async () => {
  h = await createHarness();
});
after(() => h.close());

const asOperator = (t: TestTenant) => ({ token: h.operator.token, tenant: t.id });
/** Disabled, so the worker cancels what is queued for it instead of calling out. */
const createEndpoint = (t: TestTenant, body: Record<string, unknown> = {}) =>
  h.request({
    method: 'POST',
    url: '/api/admin/webhooks',
    ...asOperator(t),
    body: { url: 'https://hooks.example.com/in', event_types: ['webhook.test'], enabled: false, ...body },
  });

/** Stops a tenant's queued deliveries, so the worker does not spend the rest of the file on them. */
async function cancelQueued(t: TestTenant) {
  await h.deps.db.kysely
    .updateTable('webhook_deliveries')
    .set({ status: 'cancelled' })
    .where('tenant_id', '=', t.id)
    .where('status', '=', 'pending')
    .execute();
}

/**
 * Endpoints written straight to the table, as a tenant may hold from before the cap existed.
 * Their URLs are refused at send time (10.255.255.1 is not public), so the worker never leaves
 * the process.
 */
async function legacyEndpoints(t: TestTenant, count: number, eventTypes: string[]) {
  const now = Date.now();
  const rows = Array.from({ length: count }, () => {
    const id = h.deps.ids.next('whe');
    return {
      id,
      tenant_id: t.id,
      url: 'https://10.255.255.1/in',
      description: null,
      event_types: JSON.stringify(eventTypes),
      secret_sealed: h.deps.masterKey.seal('whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0', secretAad(id, 'current')),
      previous_secret_sealed: null,
      previous_secret_until: null,
      disabled_at: null,
      disabled_reason: null,
      failing_since: null,
      created_at: now,
      updated_at: now,
    };
  });
  for (let i = 0; i < rows.length; i += 200) {
    await h.deps.db.kysely
      .insertInto('webhook_endpoints')
      .values(rows.slice(i, i + 200))
      .execute();
  }
}

async function deliveriesOf(eventId: string) {
  const row = await h.deps.db.kysely
    .selectFrom('webhook_deliveries')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('event_id', '=', eventId)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

describe('webhook fan-out at size', () => {
  it('sign-in still works for a tenant with 4,000 endpoints, and each gets its session.created delivery', async () => {
    const t = await h.tenant();
    const user = await t.user();
    await legacyEndpoints(t, 4_000, ['session.created']);
    const res = await t.login(user);
    assert.equal(res.status, 200, res.text);
    const event = await h.deps.db.kysely
      .selectFrom('events')
      .select('id')
      .where('tenant_id', '=', t.id)
      .where('type', '=', 'session.created')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    assert.equal(await deliveriesOf(event.id), 4_000);
    await cancelQueued(t);
  });

  it('200 replays 4,000 events since a time, one delivery each', async () => {
    const t = await h.tenant();
    const created = await createEndpoint(t, { event_types: ['*'] });
    assert.equal(created.status, 201, created.text);
    const later = Date.parse(created.body.created_at) + 1;
    const events = Array.from({ length: 4_000 }, () => ({
      id: h.deps.ids.next('evt'),
      tenant_id: t.id,
      user_id: null,
      type: 'webhook.test',
      data: '{}',
      created_at: later,
    }));
    for (let i = 0; i < events.length; i += 500) {
      await h.deps.db.kysely
        .insertInto('events')
        .values(events.slice(i, i + 500))
        .execute();
    }
    const res = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${created.body.id}/replay`,
      ...asOperator(t),
      body: { since: new Date(later).toISOString() },
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { replayed: 4_000 });
    await cancelQueued(t);
  });
});

describe('endpoints per tenant', () => {
  it(`409 resource_limit_reached past ${MAX_ENDPOINTS_PER_TENANT} endpoints, and nothing is written`, async () => {
    const t = await h.tenant();
    await legacyEndpoints(t, MAX_ENDPOINTS_PER_TENANT - 1, ['webhook.test']);
    assert.equal((await createEndpoint(t)).status, 201, 'the last one fits');
    const res = await createEndpoint(t);
    assert.equal(res.status, 409, res.text);
    assert.equal(res.body.error.code, 'resource_limit_reached');
    assert.deepEqual(res.body.error.details, { resource: 'webhook_endpoints', limit: MAX_ENDPOINTS_PER_TENANT });
    const list = await h.request({ method: 'GET', url: '/api/admin/webhooks', ...asOperator(t) });
    assert.equal(list.body.data.length, MAX_ENDPOINTS_PER_TENANT);
    const first = list.body.data[0].id;
    const deleted = await h.request({ method: 'DELETE', url: `/api/admin/webhooks/${first}`, ...asOperator(t) });
    assert.equal(deleted.status, 204, deleted.text);
    assert.equal((await createEndpoint(t)).status, 201, 'room again after a delete');
  });
});

describe('replay within the endpoint’s lifetime', () => {
  it('since sends only events from after the endpoint was created; an older event_id is a 400 naming it', async (ctx) => {
    const t = await h.tenant();
    const advance = h.clockFor(ctx);
    const before = await t.user(); // user.created, before the endpoint exists
    advance(1_000);
    const created = await createEndpoint(t, { event_types: ['user.created'] });
    assert.equal(created.status, 201, created.text);
    advance(1_000);
    await t.user(); // user.created, after
    const res = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${created.body.id}/replay`,
      ...asOperator(t),
      body: { since: '2000-01-01T00:00:00Z' },
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { replayed: 1 });

    const older = await h.deps.db.kysely
      .selectFrom('events')
      .select('id')
      .where('tenant_id', '=', t.id)
      .where('user_id', '=', before.id)
      .where('type', '=', 'user.created')
      .executeTakeFirstOrThrow();
    const refused = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${created.body.id}/replay`,
      ...asOperator(t),
      body: { event_id: older.id },
    });
    assert.equal(refused.status, 400, refused.text);
    assert.deepEqual(fieldsOf(refused), ['event_id']);
    assert.equal(await deliveriesOf(older.id), 0, 'never sent to this endpoint');
  });
});
