import type { Kysely } from 'kysely';
import { json } from '../../db/index.js';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';

/**
 * Events apps are told about (DESIGN capability 6). Written to the outbox in the transaction of
 * the change that caused them, so an event exists exactly when its change does; the webhook and
 * realtime workers deliver from the outbox.
 */
export type EventType = 'quota.exceeded' | 'connection.refresh_failed';

export async function emitEvent(
  db: Kysely<Database>,
  deps: Pick<Deps, 'ids' | 'clock'>,
  event: { tenantId: string; type: EventType; data: Record<string, unknown> },
): Promise<string> {
  const id = deps.ids.next('evt');
  await db
    .insertInto('events')
    .values({
      id,
      tenant_id: event.tenantId,
      type: event.type,
      data: json.write(event.data),
      created_at: deps.clock.now(),
    })
    .execute();
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
