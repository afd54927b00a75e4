import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHarness, type Harness } from '../../../test/harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../../../test/webhook-receiver.js';
import { OUTCOME_UNKNOWN } from './webhooks.worker.js';

let h: Harness;
let receiver: WebhookReceiver;
before(async () => {
  h = await createHarness({ OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8', WEBHOOK_TIMEOUT: '1s' });
  receiver = await startWebhookReceiver();
});
after(async () => {
  await h.close();
  await receiver.close();
});

/** Polls until `done` (the background worker delivers), at most 5 s. */
async function until(done: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100 && !(await done()); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(await done(), 'not reached in time');
}

describe('the delivery log and attempts in flight', () => {
  it('an attempt is in the log from the moment it is sent (outcome unknown), and the same row gets its outcome', async () => {
    const t = await h.tenant();
    const as = { token: h.operator.token, tenant: t.id };
    const created = await h.request({ method: 'POST', url: '/api/admin/webhooks', ...as, body: { url: receiver.url } });
    assert.equal(created.status, 201, created.text);
    const id = created.body.id;
    const attempts = async () =>
      (await h.request({ method: 'GET', url: `/api/admin/webhooks/${id}/attempts`, ...as })).body.data as {
        id: string;
        status_code: number | null;
        error: string | null;
      }[];

    receiver.next('hang');
    const before = receiver.received.length;
    assert.equal((await h.request({ method: 'POST', url: `/api/admin/webhooks/${id}/test`, ...as })).status, 202);
    await until(() => receiver.received.length > before);
    // The endpoint has the request and no answer came: a worker killed now would leave this row.
    const inFlight = await attempts();
    assert.equal(inFlight.length, 1);
    assert.deepEqual([inFlight[0].status_code, inFlight[0].error], [null, OUTCOME_UNKNOWN]);

    await until(async () => (await attempts())[0].error !== OUTCOME_UNKNOWN);
    const done = await attempts();
    assert.equal(done.length, 1, 'completed in place, not a second row');
    assert.equal(done[0].id, inFlight[0].id);
    assert.equal(done[0].status_code, null);
    assert.match(String(done[0].error), /timeout|aborted/i);
  });
});
