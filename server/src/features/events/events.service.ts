import type { Kysely } from 'kysely';
import { afterCommit, json } from '../../db/index.js';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { insertDeliveries } from '../webhooks/webhooks.repo.js';

/**
 * Events apps are told about (DESIGN capability 6). Written to the outbox in the transaction of
 * the change that caused them, so an event exists exactly when its change does; the webhook and
 * realtime workers deliver from the outbox.
 */
export const EVENT_TYPES = [
  'user.created',
  'user.updated',
  'user.deleted',
  'session.created',
  'session.revoked',
  'api_key.created',
  'api_key.revoked',
  'quota.exceeded',
  'connection.refresh_failed',
  'webhook.endpoint_disabled',
  'webhook.test',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/**
 * Writes the event to the outbox and, in the same transaction, one webhook delivery per enabled
 * endpoint of the tenant subscribed to its type (`onlyEndpoint`: that endpoint alone, for a
 * test-send). The webhook worker sends them; the event id is their `webhook-id`.
 */
export async function emitEvent(
  db: Kysely<Database>,
  deps: Pick<Deps, 'ids' | 'clock' | 'realtime'>,
  event: { tenantId: string; type: EventType; data: Record<string, unknown> },
  options: { onlyEndpoint?: string } = {},
): Promise<string> {
  const id = deps.ids.next('evt');
  const now = deps.clock.now();
  // The user it concerns, whose realtime feed carries it (and replays it on resume).
  const userId = typeof event.data.user_id === 'string' ? event.data.user_id : null;
  await db
    .insertInto('events')
    .values({
      id,
      tenant_id: event.tenantId,
      user_id: userId,
      type: event.type,
      data: json.write(event.data),
      created_at: now,
    })
    .execute();
  if (userId && options.onlyEndpoint === undefined) {
    const live = { id, type: event.type, timestamp: new Date(now).toISOString(), data: event.data };
    afterCommit(db, () =>
      deps.realtime.publish({ tenantId: event.tenantId, userId, item: { kind: 'event', event: live } }),
    );
  }
  let endpoints = db
    .selectFrom('webhook_endpoints')
    .select(['id', 'event_types'])
    .where('tenant_id', '=', event.tenantId)
    .where('disabled_at', 'is', null);
  if (options.onlyEndpoint) endpoints = endpoints.where('id', '=', options.onlyEndpoint);
  const subscribed = (await endpoints.execute()).filter((endpoint) => {
    const types = json.read<string[]>(endpoint.event_types, []);
    return options.onlyEndpoint !== undefined || types.includes('*') || types.includes(event.type);
  });
  await insertDeliveries(
    db,
    subscribed.map((endpoint) => ({
      id: deps.ids.next('whd'),
      tenant_id: event.tenantId,
      endpoint_id: endpoint.id,
      event_id: id,
      status: 'pending' as const,
      attempts: 0,
      next_attempt_at: now,
      locked_until: null,
      created_at: now,
      updated_at: now,
    })),
  );
  return id;
}

export async function listEvents(deps: Deps, tenantId: string, page: { type?: string; after?: string; limit: number }) {
  let query = deps.db.kysely
    .selectFrom('events')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('id', 'desc')
    .limit(page.limit + 1);
  if (page.type) query = query.where('type', '=', page.type);
  if (page.after) query = query.where('id', '<', page.after);
  const rows = await query.execute();
  const data = rows.slice(0, page.limit);
  return {
    data: data.map((row) => ({
      id: row.id,
      type: row.type,
      timestamp: new Date(row.created_at).toISOString(),
      data: json.read<Record<string, unknown>>(row.data, {}),
    })),
    next_cursor: rows.length > page.limit ? (data.at(-1)?.id ?? null) : null,
  };
}
