// The webhook outbox scenario of `npm run bench` (issue 6): a Gatehouse of its own (SQLite) with
// an endpoint at a local receiver (bench/receiver.ts); a backlog of deliveries is queued at once
// (replay of every event since the start), and the rate at which the receiver gets them is measured.
import { join } from 'node:path';
import { call, createFixtures } from './gatehouse.js';
import { freePort, startNode, stopChild, waitForOk } from './procs.js';
import type { NotMeasured } from './report.js';
import { failed, type StoreContext, withGatehouse } from './store-scenarios.js';

export interface WebhookBench {
  target: number;
  events: number;
  outcome:
    | {
        status: 'measured';
        delivered: number;
        distinct: number;
        /** From the replay call to the last arrival. */
        seconds: number;
        perSecond: number;
        met: boolean;
      }
    | NotMeasured;
}

interface Stats {
  count: number;
  distinct: number;
  first: number | null;
  last: number | null;
}

export async function webhookOutbox(ctx: StoreContext, events: number, target: number): Promise<WebhookBench> {
  const port = await freePort();
  const receiverUrl = `http://127.0.0.1:${port}`;
  const receiver = startNode(join(ctx.root, 'bench/receiver.ts'), {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port) },
  });
  const stats = async () => (await (await fetch(`${receiverUrl}/stats`)).json()) as Stats;
  try {
    await waitForOk(`${receiverUrl}/healthz`, receiver, 30_000);
    const outcome = await withGatehouse(
      ctx,
      'webhooks',
      { OUTBOUND_ALLOWED_NETWORKS: '127.0.0.0/8' },
      async ({ baseUrl, setupToken }) => {
        const f = await createFixtures(baseUrl, await setupToken, { crowd: false });
        const endpoint = (url: string) =>
          call<{ id: string }>(
            baseUrl,
            'POST',
            '/api/admin/webhooks',
            { url, event_types: ['webhook.test'] },
            201,
            f.adminToken,
          );
        ctx.say(`webhook outbox: ${events} events queued (test-sends), then all replayed at once to a local receiver`);
        const start = new Date(Date.now() - 60_000).toISOString();
        const warm = await endpoint(`${receiverUrl}/warm`);
        for (let i = 0; i < events; i++) {
          await call(baseUrl, 'POST', `/api/admin/webhooks/${warm.id}/test`, {}, 202, f.adminToken);
        }
        for (let i = 0; i < 600 && (await stats()).count < events; i++) await new Promise((r) => setTimeout(r, 100));
        await fetch(`${receiverUrl}/reset`, { method: 'POST' });
        const measured = await endpoint(`${receiverUrl}/measured`);
        const t0 = Date.now();
        await call(baseUrl, 'POST', `/api/admin/webhooks/${measured.id}/replay`, { since: start }, 200, f.adminToken);
        let s = await stats();
        for (let i = 0; i < 1200 && s.count < events; i++) {
          await new Promise((r) => setTimeout(r, 50));
          s = await stats();
        }
        const seconds = ((s.last ?? Date.now()) - t0) / 1000;
        const perSecond = s.count / seconds;
        return {
          status: 'measured' as const,
          delivered: s.count,
          distinct: s.distinct,
          seconds,
          perSecond,
          met: s.count >= events && s.distinct === events && perSecond >= target,
        };
      },
    );
    return { target, events, outcome };
  } catch (error) {
    return { target, events, outcome: failed(ctx.say, 'webhook outbox', error) };
  } finally {
    await stopChild(receiver);
  }
}

export function formatWebhooks(w: WebhookBench): string[] {
  const o = w.outcome;
  const head = 'webhook outbox (SQLite, local receiver)';
  if (o.status !== 'measured') return [`${head}: ${o.status.toUpperCase()} (${o.reason})`];
  return [
    `${head}: ${w.events} deliveries queued at once (replay), delivered ${o.delivered} (${o.distinct} distinct webhook-ids)`,
    `  in ${o.seconds.toFixed(2)} s: ${Math.round(o.perSecond).toLocaleString('en-US')} deliveries/s | target >= ${w.target}/s | ${o.met ? 'PASS' : 'FAIL'}`,
  ];
}
