import type { Kysely } from 'kysely';
import { json } from '../../db/index.js';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import type { Actor, ClientInfo } from '../../http/principal.js';
import { type AuditFilter, insertAuditEvent, listAuditEvents } from './audit.repo.js';

/** Security events (issue 2). Dotted names, stable: admins filter on them. */
export type AuditAction =
  | 'tenant.created'
  | 'tenant.updated'
  | 'operator.created'
  | 'user.registered'
  | 'user.imported'
  | 'user.updated'
  | 'user.deleted'
  | 'device.approved'
  | 'device.denied'
  | 'user.plan_changed'
  | 'plan.created'
  | 'plan.updated'
  | 'plan.deleted'
  | 'login.succeeded'
  | 'login.failed'
  | 'token.refreshed'
  | 'refresh_token.reuse_detected'
  | 'session.revoked'
  | 'logout'
  | 'logout.all'
  | 'password.changed'
  | 'api_key.created'
  | 'api_key.rotated'
  | 'api_key.revoked'
  | 'service_key.created'
  | 'service_key.revoked'
  | 'llm_provider.created'
  | 'llm_provider.updated'
  | 'llm_provider.deleted'
  | 'llm_route.created'
  | 'llm_route.updated'
  | 'llm_route.deleted'
  | 'llm_price.set'
  | 'llm_price.deleted'
  | 'llm_settings.updated'
  | 'connection.saved'
  | 'connection.deleted'
  | 'connection.connected'
  | 'oauth_provider.created'
  | 'oauth_provider.updated'
  | 'oauth_provider.deleted'
  | 'webhook.created'
  | 'webhook.updated'
  | 'webhook.deleted'
  | 'webhook.secret_rotated'
  | 'webhook.replayed'
  | 'webhook.disabled';

export interface AuditEntry {
  tenantId: string;
  action: AuditAction;
  actor: Actor;
  target?: { type: string; id: string };
  client?: ClientInfo;
  data?: Record<string, unknown>;
}

/** Writes one audit row, on the caller's transaction when it has one (CONVENTIONS: one transaction per change). */
export async function recordAudit(db: Kysely<Database>, deps: Pick<Deps, 'ids' | 'clock'>, entry: AuditEntry) {
  await insertAuditEvent(db, {
    id: deps.ids.next('aud'),
    tenant_id: entry.tenantId,
    action: entry.action,
    actor_type: entry.actor.type,
    actor_id: entry.actor.id,
    target_type: entry.target?.type ?? null,
    target_id: entry.target?.id ?? null,
    ip: entry.client?.ip ?? null,
    user_agent: entry.client?.userAgent ?? null,
    data: json.write(entry.data ?? {}),
    created_at: deps.clock.now(),
  });
}

export async function listAudit(deps: Deps, tenantId: string, filter: AuditFilter) {
  const rows = await listAuditEvents(deps.db.kysely, tenantId, { ...filter, limit: filter.limit + 1 });
  const page = rows.slice(0, filter.limit);
  return {
    data: page.map((row) => ({
      id: row.id,
      action: row.action,
      actor: { type: row.actor_type, id: row.actor_id },
      target: row.target_type ? { type: row.target_type, id: row.target_id } : null,
      ip: row.ip,
      user_agent: row.user_agent,
      data: json.read<Record<string, unknown>>(row.data, {}),
      created_at: new Date(row.created_at).toISOString(),
    })),
    next_cursor: rows.length > filter.limit ? (page.at(-1)?.id ?? null) : null,
  };
}
