import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { createHarness, fieldsOf, type Harness, type TestTenant } from '../../../test/harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../../../test/webhook-receiver.js';
import { claimDue } from './webhooks.repo.js';
import { deliverDue, RETRY_SCHEDULE_MS } from './webhooks.worker.js';

let h: Harness;
const receivers: WebhookReceiver[] = [];
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8', WEBHOOK_TIMEOUT: '2s' });
});
after(async () => {
  await h.close();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver(): Promise<WebhookReceiver> {
  const r = await startWebhookReceiver();
  receivers.push(r);
  return r;
}

/** Runs delivery passes (the background worker runs too) until `done` or 5 s. */
async function until(done: () => boolean, instance: { deps: Harness['deps'] } = h): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) {
    await deliverDue(instance.deps);
    if (!done()) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(done(), 'not delivered in time');
}

async function endpoint(t: TestTenant, url: string, body: Record<string, unknown> = {}) {
  const res = await h.request({
    method: 'POST',
    url: '/api/admin/webhooks',
    token: h.operator.token,
    tenant: t.id,
    body: { url, ...body },
  });
  assert.equal(res.status, 201, res.text);
  return res.body as { id: string; secret: string };
}

const headersOf = (r: WebhookReceiver['received'][number]) => ({
  'webhook-id': String(r.headers['webhook-id']),
  'webhook-timestamp': String(r.headers['webhook-timestamp']),
  'webhook-signature': String(r.headers['webhook-signature']),
});

describe('webhook endpoints', () => {
  it('the secret is shown once and stored sealed; bad URLs and event types are refused naming the field', async () => {
    const t = await h.tenant();
    const r = await receiver();
    const created = await endpoint(t, r.url, { event_types: ['user.created'] });
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/=]{32}$/);
    const listed = await h.request({
      method: 'GET',
      url: '/api/admin/webhooks',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.doesNotMatch(listed.text, /whsec_/);
    const rows = await h.deps.db.kysely.selectFrom('webhook_endpoints').selectAll().execute();
    assert.doesNotMatch(JSON.stringify(rows), new RegExp(created.secret.slice(6, 30).replace(/[+/]/g, '.')));
    for (const [body, field] of [
      [{ url: 'http://10.1.2.3/hooks' }, 'url'],
      [{ url: 'http://169.254.169.254/latest' }, 'url'],
      [{ url: 'http://[::10.0.0.1]/hooks' }, 'url'],
      [{ url: 'http://[::ffff:169.254.169.254]/latest' }, 'url'],
      [{ url: 'http://[64:ff9b::10.0.0.1]/hooks' }, 'url'],
      [{ url: 'ftp://example.com' }, 'url'],
      [{ url: r.url, event_types: ['user.created', 'nope'] }, 'event_types.1'],
    ] as const) {
      const res = await h.request({
        method: 'POST',
        url: '/api/admin/webhooks',
        token: h.operator.token,
        tenant: t.id,
        body,
      });
      assert.equal(res.status, 400, res.text);
      assert.deepEqual(fieldsOf(res), [field]);
    }
  });
});

describe('webhook deliveries', () => {
  it('a subscribed event is delivered signed per Standard Webhooks; the standardwebhooks library verifies it', async () => {
    const t = await h.tenant();
    const r = await receiver();
    const { secret } = await endpoint(t, r.url, { event_types: ['user.created'] });
    const user = await t.user();
    await until(() => r.received.length >= 1);
    const delivery = r.received[0];
    const payload = new Webhook(secret).verify(delivery.body, headersOf(delivery)) as {
      type: string;
      timestamp: string;
      data: { user_id: string };
    };
    assert.equal(payload.type, 'user.created');
    assert.equal(payload.data.user_id, user.id);
    assert.ok(Date.parse(payload.timestamp));
    const events = await h.request({
      method: 'GET',
      url: '/api/admin/events?type=user.created',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(delivery.headers['webhook-id'], events.body.data[0].id, 'webhook-id is the event id');
    // Only what it subscribed to: the session.created of the same sign-up was not sent.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(r.received.length, 1);
  });

  it('retries follow the schedule (5 s, 5 min, …) with the same webhook-id; every attempt is in the log', async (ctx) => {
    const t = await h.tenant();
    const r = await receiver();
    const ep = await endpoint(t, r.url, { event_types: ['webhook.test'] });
    r.next('fail', 'fail');
    await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${ep.id}/test`,
      token: h.operator.token,
      tenant: t.id,
    });
    await until(() => r.received.length >= 1);
    await deliverDue(h.deps);
    assert.equal(r.received.length, 1, 'not again before 5 s');
    const advance = h.clockFor(ctx);
    advance(RETRY_SCHEDULE_MS[0]);
    await until(() => r.received.length >= 2);
    advance(RETRY_SCHEDULE_MS[1] - 1_000);
    await deliverDue(h.deps);
    assert.equal(r.received.length, 2, 'not again before 5 min');
    advance(1_000);
    await until(() => r.received.length >= 3);
    assert.equal(new Set(r.received.map((x) => x.headers['webhook-id'])).size, 1);
    const log = await h.request({
      method: 'GET',
      url: `/api/admin/webhooks/${ep.id}/attempts`,
      token: h.operator.token,
      tenant: t.id,
    });
    assert.deepEqual(
      log.body.data.map((a: { attempt: number; status_code: number }) => [a.attempt, a.status_code]),
      [
        [3, 200],
        [2, 500],
        [1, 500],
      ],
    );
    assert.equal(log.body.data[0].response_excerpt, 'thanks');
  });

  it('410 disables the endpoint and says so in a webhook.endpoint_disabled event', async () => {
    const t = await h.tenant();
    const r = await receiver();
    const ep = await endpoint(t, r.url);
    r.next('gone');
    await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${ep.id}/test`,
      token: h.operator.token,
      tenant: t.id,
    });
    await until(() => r.received.length >= 1);
    let state = await h.request({
      method: 'GET',
      url: `/api/admin/webhooks/${ep.id}`,
      token: h.operator.token,
      tenant: t.id,
    });
    for (let i = 0; i < 20 && state.body.enabled; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      state = await h.request({
        method: 'GET',
        url: `/api/admin/webhooks/${ep.id}`,
        token: h.operator.token,
        tenant: t.id,
      });
    }
    assert.equal(state.body.enabled, false);
    assert.match(state.body.disabled_reason, /410/);
    const events = await h.request({
      method: 'GET',
      url: '/api/admin/events?type=webhook.endpoint_disabled',
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(events.body.data[0].data.endpoint_id, ep.id);
    await t.user();
    await deliverDue(h.deps);
    assert.equal(r.received.length, 1, 'a disabled endpoint gets nothing');
  });

  it('after a secret rotation both signatures are sent and each secret verifies; replay sends the same webhook-id', async () => {
    const t = await h.tenant();
    const r = await receiver();
    const ep = await endpoint(t, r.url, { event_types: ['webhook.test'] });
    const rotated = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${ep.id}/rotate-secret`,
      token: h.operator.token,
      tenant: t.id,
    });
    assert.equal(rotated.status, 200, rotated.text);
    assert.notEqual(rotated.body.secret, ep.secret);
    const sent = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${ep.id}/test`,
      token: h.operator.token,
      tenant: t.id,
    });
    await until(() => r.received.length >= 1);
    const first = r.received[0];
    assert.equal(String(first.headers['webhook-signature']).split(' ').length, 2);
    for (const secret of [ep.secret, rotated.body.secret]) new Webhook(secret).verify(first.body, headersOf(first));

    const replayed = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${ep.id}/replay`,
      token: h.operator.token,
      tenant: t.id,
      body: { event_id: sent.body.event_id },
    });
    assert.deepEqual(replayed.body, { replayed: 1 });
    await until(() => r.received.length >= 2);
    assert.equal(r.received[1].headers['webhook-id'], sent.body.event_id);
    const both = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${ep.id}/replay`,
      token: h.operator.token,
      tenant: t.id,
      body: {},
    });
    assert.deepEqual(fieldsOf(both), ['event_id']);
  });

  it('a worker that dies mid-delivery loses nothing: once its lock expires the same webhook-id is sent again', async (ctx) => {
    const t = await h.tenant();
    const r = await receiver();
    const ep = await endpoint(t, r.url, { event_types: ['webhook.test'] });
    // A worker claims the delivery and dies before sending (the claim is all it did).
    r.next('hang');
    const sent = await h.request({
      method: 'POST',
      url: `/api/admin/webhooks/${ep.id}/test`,
      token: h.operator.token,
      tenant: t.id,
    });
    const now = h.clock.now();
    const claimed = await claimDue(h.deps.db.kysely, now, now + 60_000, 1000);
    const mine = claimed.filter((d) => d.endpoint_id === ep.id);
    if (mine.length === 0) {
      // The background worker got there first (it is now the one stuck on the hanging receiver).
      await until(() => r.received.length >= 1);
    }
    const advance = h.clockFor(ctx);
    advance(90_000);
    await until(
      () => r.received.filter((x) => x.headers['webhook-id'] === sent.body.event_id).length >= (mine.length ? 1 : 2),
    );
    const ids = r.received.map((x) => x.headers['webhook-id']);
    assert.ok(ids.every((id) => id === sent.body.event_id));
  });

  it('two instances on PostgreSQL deliver each attempt once', async (ctx) => {
    if (!process.env.TEST_DATABASE_URL) return ctx.skip('needs TEST_DATABASE_URL (SQLite mode is one instance)');
    const second = await h.secondInstance();
    const t = await h.tenant();
    const r = await receiver();
    const ep = await endpoint(t, r.url, { event_types: ['webhook.test'] });
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await h.request({
        method: 'POST',
        url: `/api/admin/webhooks/${ep.id}/test`,
        token: h.operator.token,
        tenant: t.id,
      });
      ids.push(res.body.event_id);
    }
    await Promise.all([until(() => r.received.length >= 40), until(() => r.received.length >= 40, second)]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(r.received.length, 40, 'each delivered exactly once');
    assert.deepEqual(new Set(r.received.map((x) => x.headers['webhook-id'])), new Set(ids));
  });
});
