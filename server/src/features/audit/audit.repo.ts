import type { Kysely } from 'kysely';
import type { AuditEventTable, Database } from '../../db/schema.js';

export async function insertAuditEvent(db: Kysely<Database>, row: AuditEventTable): Promise<void> {
  await db.insertInto('audit_events').values(row).execute();
}

export interface AuditFilter {
  action?: string;
  actorId?: string;
  targetId?: string;
  after?: string;
  limit: number;
}

/** Newest first; the cursor is the last id seen (ids are time-ordered). */
export function listAuditEvents(db: Kysely<Database>, tenantId: string, filter: AuditFilter) {
  let query = db
    .selectFrom('audit_events')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('id', 'desc')
    .limit(filter.limit);
  if (filter.action) query = query.where('action', '=', filter.action);
  if (filter.actorId) query = query.where('actor_id', '=', filter.actorId);
  if (filter.targetId) query = query.where('target_id', '=', filter.targetId);
  if (filter.after) query = query.where('id', '<', filter.after);
  return query.execute();
}
