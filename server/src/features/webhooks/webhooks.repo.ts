import { type Kysely, PostgresAdapter } from 'kysely';
import type { Database, WebhookAttemptTable, WebhookDeliveryTable, WebhookEndpointTable } from '../../db/schema.js';

export type EndpointRow = WebhookEndpointTable;
export type DeliveryRow = WebhookDeliveryTable;
export type AttemptRow = WebhookAttemptTable;

export async function insertEndpoint(db: Kysely<Database>, row: EndpointRow): Promise<void> {
  await db.insertInto('webhook_endpoints').values(row).execute();
}

export function listEndpointRows(db: Kysely<Database>, tenantId: string) {
  return db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('id', 'asc')
    .execute();
}

export function findEndpoint(db: Kysely<Database>, tenantId: string, id: string) {
  return db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function updateEndpointRow(
  db: Kysely<Database>,
  id: string,
  changes: Partial<EndpointRow>,
): Promise<void> {
  await db.updateTable('webhook_endpoints').set(changes).where('id', '=', id).execute();
}

export async function deleteEndpointRow(db: Kysely<Database>, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom('webhook_endpoints').where('tenant_id', '=', tenantId).where('id', '=', id).execute();
}

/**
 * Rows per INSERT: ten values each, so 5,000 bound parameters per statement, well under SQLite's
 * 32,766 and PostgreSQL's 65,535 (one statement for thousands of rows broke SQLite's limit).
 */
const DELIVERY_BATCH = 500;

export async function insertDeliveries(db: Kysely<Database>, rows: DeliveryRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += DELIVERY_BATCH) {
    await db
      .insertInto('webhook_deliveries')
      .values(rows.slice(i, i + DELIVERY_BATCH))
      .execute();
  }
}

export async function countEndpoints(db: Kysely<Database>, tenantId: string): Promise<number> {
  const row = await db
    .selectFrom('webhook_endpoints')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

/**
 * Claims due deliveries for one attempt each: the attempt is counted and the row locked until
 * `lockUntil`, in one statement. On PostgreSQL the candidates are picked FOR UPDATE SKIP LOCKED,
 * so instances claiming at once never take the same row; SQLite has one writer (one instance).
 */
export function claimDue(db: Kysely<Database>, now: number, lockUntil: number, limit: number) {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  return db
    .updateTable('webhook_deliveries')
    .set((eb) => ({ locked_until: lockUntil, attempts: eb('attempts', '+', 1), updated_at: now }))
    .where('id', 'in', (eb) => {
      let due = eb
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('status', '=', 'pending')
        .where('next_attempt_at', '<=', now)
        .where((w) => w.or([w('locked_until', 'is', null), w('locked_until', '<', now)]))
        .orderBy('next_attempt_at', 'asc')
        .limit(limit);
      if (postgres) due = due.forUpdate().skipLocked();
      return due;
    })
    .returningAll()
    .execute();
}

export async function updateDelivery(db: Kysely<Database>, id: string, changes: Partial<DeliveryRow>): Promise<void> {
  await db.updateTable('webhook_deliveries').set(changes).where('id', '=', id).execute();
}

/** Stops the pending deliveries of an endpoint (disabled or deleted). */
export async function cancelPending(db: Kysely<Database>, endpointId: string, now: number): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set({ status: 'cancelled', updated_at: now })
    .where('endpoint_id', '=', endpointId)
    .where('status', '=', 'pending')
    .execute();
}

export async function insertAttempt(db: Kysely<Database>, row: AttemptRow): Promise<void> {
  await db.insertInto('webhook_attempts').values(row).execute();
}

export function listAttemptRows(db: Kysely<Database>, endpointId: string, page: { after?: string; limit: number }) {
  let query = db
    .selectFrom('webhook_attempts')
    .selectAll()
    .where('endpoint_id', '=', endpointId)
    .orderBy('id', 'desc')
    .limit(page.limit + 1);
  if (page.after) query = query.where('id', '<', page.after);
  return query.execute();
}

/** Records what an attempt came to, on the row written before it was sent (webhooks.worker.ts). */
export async function completeAttempt(
  db: Kysely<Database>,
  id: string,
  outcome: Pick<AttemptRow, 'status_code' | 'error' | 'latency_ms' | 'response_excerpt'>,
): Promise<void> {
  await db.updateTable('webhook_attempts').set(outcome).where('id', '=', id).execute();
}
