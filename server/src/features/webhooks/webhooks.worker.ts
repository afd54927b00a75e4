import { Webhook } from 'standardwebhooks';
import { json, transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { OutboundRefused } from '../../lib/outbound.js';
import { recordAudit } from '../audit/audit.service.js';
import { emitEvent } from '../events/events.service.js';
import {
  cancelPending,
  claimDue,
  completeAttempt,
  type DeliveryRow,
  insertAttempt,
  updateDelivery,
  updateEndpointRow,
} from './webhooks.repo.js';
import { signingSecrets } from './webhooks.service.js';

/** After the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Svix's schedule), then failed. */
export const RETRY_SCHEDULE_MS = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
/** An endpoint whose every attempt has failed for this long is disabled, and the tenant told. */
const DISABLE_AFTER_MS = 5 * 86_400_000;
const EXCERPT_BYTES = 1024;
/**
 * What an attempt's row says from just before it is sent until its outcome is recorded. A row left
 * so (the instance was killed mid-send) tells the delivery log that the endpoint may have received
 * it: it is sent again, with the same webhook-id, once the claim expires.
 */
export const OUTCOME_UNKNOWN =
  'no outcome recorded: in flight, or the sending instance stopped before recording it (the endpoint may have received it)';

/** What one attempt came to. */
interface Outcome {
  statusCode: number | null;
  error: string | null;
  excerpt: string | null;
  latencyMs: number;
}

/** POSTs the payload once: no redirects (the agent follows none), a timeout, the first KB of the answer kept. */
async function send(deps: Deps, url: string, headers: Record<string, string>, body: string): Promise<Outcome> {
  const started = performance.now();
  try {
    const response = await deps.outbound.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'Gatehouse-Webhooks/1', ...headers },
      body,
      headersTimeout: deps.config.webhooks.timeoutMs,
      bodyTimeout: deps.config.webhooks.timeoutMs,
      signal: AbortSignal.timeout(deps.config.webhooks.timeoutMs),
    });
    let excerpt = '';
    for await (const chunk of response.body) {
      excerpt += (chunk as Buffer).toString('utf8');
      if (excerpt.length >= EXCERPT_BYTES) break;
    }
    response.body.destroy();
    return {
      statusCode: response.statusCode,
      error: null,
      excerpt: excerpt.slice(0, EXCERPT_BYTES) || null,
      latencyMs: Math.round(performance.now() - started),
    };
  } catch (error) {
    const refused = [error, (error as { cause?: unknown }).cause].find((e) => e instanceof OutboundRefused);
    const message = refused ? (refused as Error).message : (error as Error).message;
    return { statusCode: null, error: message, excerpt: null, latencyMs: Math.round(performance.now() - started) };
  }
}

/**
 * One pass of the delivery worker: claims due deliveries (each attempt by exactly one instance;
 * see claimDue), sends them signed per Standard Webhooks, and records each attempt (its row is
 * written before sending, its outcome after). A worker that dies mid-delivery leaves an attempt
 * of unknown outcome and the row locked until its lock expires; then another sends it again,
 * with the same webhook-id (delivery is at least once). Returns how many attempts were made.
 */
export async function deliverDue(deps: Deps, limit = 50): Promise<number> {
  const db = deps.db.kysely;
  const now = deps.clock.now();
  const claimed = await claimDue(db, now, now + deps.config.webhooks.timeoutMs + 10_000, limit);
  await Promise.all(claimed.map((delivery) => attempt(deps, delivery)));
  return claimed.length;
}

async function attempt(deps: Deps, delivery: DeliveryRow): Promise<void> {
  const db = deps.db.kysely;
  const [endpoint, event] = await Promise.all([
    db.selectFrom('webhook_endpoints').selectAll().where('id', '=', delivery.endpoint_id).executeTakeFirst(),
    db.selectFrom('events').selectAll().where('id', '=', delivery.event_id).executeTakeFirst(),
  ]);
  if (!endpoint || !event || endpoint.disabled_at !== null) {
    await updateDelivery(db, delivery.id, { status: 'cancelled', locked_until: null, updated_at: deps.clock.now() });
    return;
  }
  const body = JSON.stringify({
    type: event.type,
    timestamp: new Date(event.created_at).toISOString(),
    data: json.read<Record<string, unknown>>(event.data, {}),
  });
  const sentAt = new Date(deps.clock.now());
  // Written before sending, so every request an endpoint receives has its row in the delivery log.
  const attemptId = deps.ids.next('wha');
  await insertAttempt(db, {
    id: attemptId,
    tenant_id: delivery.tenant_id,
    delivery_id: delivery.id,
    endpoint_id: endpoint.id,
    event_id: event.id,
    attempt: delivery.attempts,
    status_code: null,
    error: OUTCOME_UNKNOWN,
    latency_ms: 0,
    response_excerpt: null,
    created_at: sentAt.getTime(),
  });
  const signature = signingSecrets(deps, endpoint)
    .map((secret) => new Webhook(secret).sign(event.id, sentAt, body))
    .join(' ');
  const outcome = await send(
    deps,
    endpoint.url,
    {
      'webhook-id': event.id,
      'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
      'webhook-signature': signature,
    },
    body,
  );
  const now = deps.clock.now();
  const ok = outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 300;
  const gone = outcome.statusCode === 410;
  const retryIn = RETRY_SCHEDULE_MS[delivery.attempts - 1];
  await transaction(db, async (trx) => {
    await completeAttempt(trx, attemptId, {
      status_code: outcome.statusCode,
      error: outcome.error,
      latency_ms: outcome.latencyMs,
      response_excerpt: outcome.excerpt,
    });
    if (ok) {
      await updateDelivery(trx, delivery.id, { status: 'delivered', locked_until: null, updated_at: now });
      if (endpoint.failing_since !== null) await updateEndpointRow(trx, endpoint.id, { failing_since: null });
      return;
    }
    const failingSince = endpoint.failing_since ?? now;
    const reason = gone
      ? 'the endpoint answered 410 Gone'
      : now - failingSince >= DISABLE_AFTER_MS
        ? 'every delivery failed for 5 days'
        : null;
    await updateDelivery(trx, delivery.id, {
      status: gone || retryIn === undefined ? (gone ? 'cancelled' : 'failed') : 'pending',
      next_attempt_at: now + (retryIn ?? 0),
      locked_until: null,
      updated_at: now,
    });
    await updateEndpointRow(trx, endpoint.id, { failing_since: failingSince });
    if (reason) {
      await updateEndpointRow(trx, endpoint.id, { disabled_at: now, disabled_reason: reason, updated_at: now });
      await cancelPending(trx, endpoint.id, now);
      await recordAudit(trx, deps, {
        tenantId: endpoint.tenant_id,
        action: 'webhook.disabled',
        actor: { type: 'system', id: null },
        target: { type: 'webhook_endpoint', id: endpoint.id },
        client: { ip: null, userAgent: null },
        data: { reason, url: endpoint.url },
      });
      // The tenant's admins hear of it through their other endpoints (and the event list).
      await emitEvent(trx, deps, {
        tenantId: endpoint.tenant_id,
        type: 'webhook.endpoint_disabled',
        data: { endpoint_id: endpoint.id, url: endpoint.url, reason },
      });
    }
  });
}

/**
 * The delivery loop of this instance: a pass as soon as the last one claimed a full batch (so a
 * backlog drains at full speed), else every `idleMs`. Stopping waits for the pass in flight.
 */
export function startWebhookWorker(deps: Deps, idleMs = 1_000, batch = 100): { stop(): Promise<void> } {
  let stopped = false;
  let wake: (() => void) | undefined;
  const loop = (async () => {
    while (!stopped) {
      let claimed = 0;
      try {
        claimed = await deliverDue(deps, batch);
      } catch (error) {
        deps.log.error({ err: error }, 'webhook delivery pass failed');
      }
      if (claimed < batch && !stopped) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, idleMs).unref();
        });
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}
