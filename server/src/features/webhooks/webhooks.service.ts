import { randomBytes } from 'node:crypto';
import { json, transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField, notFound } from '../../errors.js';
import type { Actor, ClientInfo } from '../../http/principal.js';
import { checkUrlHost, OutboundRefused } from '../../lib/outbound.js';
import { webUrlProblem } from '../../lib/web-urls.js';
import { recordAudit } from '../audit/audit.service.js';
import { EVENT_TYPES, emitEvent } from '../events/events.service.js';
import {
  cancelPending,
  countEndpoints,
  deleteEndpointRow,
  type EndpointRow,
  findEndpoint,
  insertDeliveries,
  insertEndpoint,
  listAttemptRows,
  listEndpointRows,
  updateEndpointRow,
} from './webhooks.repo.js';

// Webhook endpoints per tenant (Svix-like): URL, subscribed event types, a whsec_ secret shown
// once, rotation with both signatures during the overlap, the delivery log, replay and test-send.

export const secretAad = (endpointId: string, which: 'current' | 'previous') => `webhook_secret:${endpointId}:${which}`;

/**
 * Endpoints a tenant may have. Every event fans out to each of them inside the transaction of the
 * change that caused it (a sign-in's session.created too), so their number is bounded; Stripe
 * allows 16 per account, 50 leaves room for several apps per tenant.
 */
export const MAX_ENDPOINTS_PER_TENANT = 50;

/** Standard Webhooks secrets: `whsec_` and base64 of 24 random bytes. */
const newSecret = () => `whsec_${randomBytes(24).toString('base64')}`;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function presentEndpoint(row: EndpointRow) {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    event_types: json.read<string[]>(row.event_types, []),
    enabled: row.disabled_at === null,
    disabled_reason: row.disabled_reason,
    failing_since: iso(row.failing_since),
    secret_rotating_until: row.previous_secret_sealed ? iso(row.previous_secret_until) : null,
    created_at: iso(row.created_at) as string,
    updated_at: iso(row.updated_at) as string,
  };
}

/** http(s), no credentials; an address literal outside the outbound policy is refused here (names when sending). */
function endpointUrl(deps: Deps, text: string): string {
  const problem = webUrlProblem(text, 'webhook');
  if (problem) throw invalidField('url', problem);
  const url = new URL(text);
  try {
    checkUrlHost(url, deps.outbound.allowed);
  } catch (error) {
    if (error instanceof OutboundRefused) throw invalidField('url', error.message);
    throw error;
  }
  return url.href;
}

function eventTypes(types: string[] | undefined): string[] {
  const list = types ?? ['*'];
  list.forEach((type, index) => {
    if (type !== '*' && !(EVENT_TYPES as readonly string[]).includes(type)) {
      throw invalidField(`event_types.${index}`, `is not an event type (${EVENT_TYPES.join(', ')}, or *)`);
    }
  });
  return [...new Set(list)];
}

export async function listEndpoints(deps: Deps, tenantId: string) {
  return (await listEndpointRows(deps.db.kysely, tenantId)).map(presentEndpoint);
}

export async function requireEndpoint(deps: Deps, tenantId: string, id: string): Promise<EndpointRow> {
  const row = await findEndpoint(deps.db.kysely, tenantId, id);
  if (!row) throw notFound('Webhook endpoint');
  return row;
}

export interface EndpointInput {
  url: string;
  description?: string | null;
  event_types?: string[];
  enabled?: boolean;
}

/** Creates an endpoint; its secret is in this answer only. */
export async function createEndpoint(
  deps: Deps,
  tenantId: string,
  input: EndpointInput,
  actor: Actor,
  client: ClientInfo,
) {
  // Soft under concurrency (two creates at 49 may both pass): a bound on fan-out, not an invariant.
  if ((await countEndpoints(deps.db.kysely, tenantId)) >= MAX_ENDPOINTS_PER_TENANT) {
    throw new AppError(
      'resource_limit_reached',
      `A tenant may have at most ${MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first`,
      { details: { resource: 'webhook_endpoints', limit: MAX_ENDPOINTS_PER_TENANT } },
    );
  }
  const now = deps.clock.now();
  const secret = newSecret();
  const id = deps.ids.next('whe');
  const row: EndpointRow = {
    id,
    tenant_id: tenantId,
    url: endpointUrl(deps, input.url),
    description: input.description ?? null,
    event_types: json.write(eventTypes(input.event_types)),
    secret_sealed: deps.masterKey.seal(secret, secretAad(id, 'current')),
    previous_secret_sealed: null,
    previous_secret_until: null,
    disabled_at: input.enabled === false ? now : null,
    disabled_reason: input.enabled === false ? 'disabled by an admin' : null,
    failing_since: null,
    created_at: now,
    updated_at: now,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await insertEndpoint(trx, row);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'webhook.created',
      actor,
      target: { type: 'webhook_endpoint', id },
      client,
      data: { url: row.url },
    });
  });
  return { ...presentEndpoint(row), secret };
}

export async function updateEndpoint(
  deps: Deps,
  tenantId: string,
  id: string,
  input: Partial<EndpointInput>,
  actor: Actor,
  client: ClientInfo,
) {
  const row = await requireEndpoint(deps, tenantId, id);
  const now = deps.clock.now();
  const changes: Partial<EndpointRow> = { updated_at: now };
  if (input.url !== undefined) changes.url = endpointUrl(deps, input.url);
  if (input.description !== undefined) changes.description = input.description;
  if (input.event_types !== undefined) changes.event_types = json.write(eventTypes(input.event_types));
  if (input.enabled === true) Object.assign(changes, { disabled_at: null, disabled_reason: null, failing_since: null });
  if (input.enabled === false && row.disabled_at === null) {
    Object.assign(changes, { disabled_at: now, disabled_reason: 'disabled by an admin' });
  }
  await transaction(deps.db.kysely, async (trx) => {
    await updateEndpointRow(trx, id, changes);
    if (changes.disabled_at) await cancelPending(trx, id, now);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'webhook.updated',
      actor,
      target: { type: 'webhook_endpoint', id },
      client,
      data: { fields: Object.keys(input) },
    });
  });
  return presentEndpoint({ ...row, ...changes });
}

export async function deleteEndpoint(deps: Deps, tenantId: string, id: string, actor: Actor, client: ClientInfo) {
  await requireEndpoint(deps, tenantId, id);
  await transaction(deps.db.kysely, async (trx) => {
    await cancelPending(trx, id, deps.clock.now());
    await deleteEndpointRow(trx, tenantId, id);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'webhook.deleted',
      actor,
      target: { type: 'webhook_endpoint', id },
      client,
    });
  });
}

/** A new secret (shown once); the old one keeps signing too for WEBHOOK_SECRET_OVERLAP. */
export async function rotateSecret(deps: Deps, tenantId: string, id: string, actor: Actor, client: ClientInfo) {
  const row = await requireEndpoint(deps, tenantId, id);
  const now = deps.clock.now();
  const secret = newSecret();
  const previous = deps.masterKey.open(row.secret_sealed, secretAad(id, 'current'));
  const changes: Partial<EndpointRow> = {
    secret_sealed: deps.masterKey.seal(secret, secretAad(id, 'current')),
    previous_secret_sealed: deps.masterKey.seal(previous, secretAad(id, 'previous')),
    previous_secret_until: now + deps.config.webhooks.secretOverlapMs,
    updated_at: now,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await updateEndpointRow(trx, id, changes);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'webhook.secret_rotated',
      actor,
      target: { type: 'webhook_endpoint', id },
      client,
    });
  });
  return { ...presentEndpoint({ ...row, ...changes }), secret };
}

/** The secrets that sign a delivery now: the current one, and the previous one during its overlap. */
export function signingSecrets(deps: Deps, row: EndpointRow): string[] {
  const secrets = [deps.masterKey.open(row.secret_sealed, secretAad(row.id, 'current')).toString('utf8')];
  if (row.previous_secret_sealed && (row.previous_secret_until ?? 0) > deps.clock.now()) {
    secrets.push(deps.masterKey.open(row.previous_secret_sealed, secretAad(row.id, 'previous')).toString('utf8'));
  }
  return secrets;
}

/** The delivery log: attempts, newest first. */
export async function listAttempts(deps: Deps, tenantId: string, id: string, page: { cursor?: string; limit: number }) {
  await requireEndpoint(deps, tenantId, id);
  const rows = await listAttemptRows(deps.db.kysely, id, { after: page.cursor, limit: page.limit });
  const data = rows.slice(0, page.limit);
  return {
    data: data.map((row) => ({
      id: row.id,
      event_id: row.event_id,
      attempt: row.attempt,
      status_code: row.status_code,
      error: row.error,
      latency_ms: row.latency_ms,
      response_excerpt: row.response_excerpt,
      created_at: iso(row.created_at) as string,
    })),
    next_cursor: rows.length > page.limit ? (data.at(-1)?.id ?? null) : null,
  };
}

/** Events one replay sends at most; a later `since` sends the rest. */
const MAX_REPLAY = 10_000;

/**
 * Sends events again to one endpoint: one event, or every event of the tenant since a time that
 * the endpoint subscribes to. Each is a new delivery with the event's id (the same webhook-id).
 * An endpoint only ever gets events from after it was created: `since` starts there at the
 * earliest, and an older `event_id` is refused (it was never this endpoint's to receive).
 */
export async function replay(
  deps: Deps,
  tenantId: string,
  id: string,
  input: { event_id?: string; since?: string },
  actor: Actor,
  client: ClientInfo,
) {
  const endpoint = await requireEndpoint(deps, tenantId, id);
  if ((input.event_id === undefined) === (input.since === undefined)) {
    throw invalidField('event_id', 'send either event_id or since');
  }
  let query = deps.db.kysely
    .selectFrom('events')
    .select(['id', 'type', 'created_at'])
    .where('tenant_id', '=', tenantId);
  if (input.event_id !== undefined) query = query.where('id', '=', input.event_id);
  else {
    const since = Date.parse(input.since ?? '');
    if (Number.isNaN(since)) throw invalidField('since', 'must be an ISO 8601 date-time');
    query = query.where('created_at', '>=', Math.max(since, endpoint.created_at));
  }
  const types = json.read<string[]>(endpoint.event_types, []);
  const events = (await query.orderBy('id', 'asc').limit(MAX_REPLAY).execute()).filter(
    (event) => input.event_id !== undefined || types.includes('*') || types.includes(event.type),
  );
  if (input.event_id !== undefined && events.length === 0) throw notFound('Event');
  if (input.event_id !== undefined && events[0].created_at < endpoint.created_at) {
    throw invalidField('event_id', 'was emitted before this endpoint existed');
  }
  const now = deps.clock.now();
  await transaction(deps.db.kysely, async (trx) => {
    await insertDeliveries(
      trx,
      events.map((event) => ({
        id: deps.ids.next('whd'),
        tenant_id: tenantId,
        endpoint_id: id,
        event_id: event.id,
        status: 'pending' as const,
        attempts: 0,
        next_attempt_at: now,
        locked_until: null,
        created_at: now,
        updated_at: now,
      })),
    );
    await recordAudit(trx, deps, {
      tenantId,
      action: 'webhook.replayed',
      actor,
      target: { type: 'webhook_endpoint', id },
      client,
      data: { events: events.length, ...input },
    });
  });
  return { replayed: events.length };
}

/** A `webhook.test` event for this endpoint alone. */
export async function testSend(deps: Deps, tenantId: string, id: string) {
  const endpoint = await requireEndpoint(deps, tenantId, id);
  if (endpoint.disabled_at !== null) {
    throw new AppError('conflict', 'The endpoint is disabled; enable it first (PATCH enabled: true)');
  }
  const eventId = await transaction(deps.db.kysely, (trx) =>
    emitEvent(trx, deps, { tenantId, type: 'webhook.test', data: { endpoint_id: id } }, { onlyEndpoint: id }),
  );
  return { event_id: eventId };
}
