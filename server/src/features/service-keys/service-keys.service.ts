import type { ResolvedPrincipal } from '../../auth-cache.js';
import { transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { notFound } from '../../errors.js';
import type { Actor, ClientInfo } from '../../http/principal.js';
import { SERVICE_KEY_PREFIX } from '../../lib/key-prefixes.js';
import { createSecret, hasValidChecksum, sha256, visibleStart } from '../../lib/tokens.js';
import { recordAudit } from '../audit/audit.service.js';
import {
  findServiceKeyByHash,
  insertServiceKey,
  listServiceKeys as listRows,
  revokeServiceKey as revokeRow,
  type ServiceKeyRow,
} from './service-keys.repo.js';

function present(row: ServiceKeyRow) {
  return {
    id: row.id,
    name: row.name,
    start: row.start,
    created_at: new Date(row.created_at).toISOString(),
    last_used_at: row.last_used_at === null ? null : new Date(row.last_used_at).toISOString(),
  };
}

export async function createServiceKey(deps: Deps, tenantId: string, name: string, actor: Actor, client: ClientInfo) {
  const key = createSecret(SERVICE_KEY_PREFIX);
  const row: ServiceKeyRow = {
    id: deps.ids.next('svc'),
    tenant_id: tenantId,
    name,
    start: visibleStart(key),
    key_hash: sha256(key),
    created_at: deps.clock.now(),
    last_used_at: null,
    revoked_at: null,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await insertServiceKey(trx, row);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'service_key.created',
      actor,
      target: { type: 'service_key', id: row.id },
      client,
      data: { name },
    });
  });
  return { ...present(row), key };
}

export async function listServiceKeys(deps: Deps, tenantId: string) {
  return (await listRows(deps.db.kysely, tenantId)).map(present);
}

export async function revokeServiceKey(deps: Deps, tenantId: string, id: string, actor: Actor, client: ClientInfo) {
  await transaction(deps.db.kysely, async (trx) => {
    if (!(await revokeRow(trx, tenantId, id, deps.clock.now()))) throw notFound('Service key');
    await recordAudit(trx, deps, {
      tenantId,
      action: 'service_key.revoked',
      actor,
      target: { type: 'service_key', id },
      client,
    });
  });
  deps.caches.auth.clear();
}

export async function resolveServiceKeyPrincipal(deps: Deps, key: string): Promise<ResolvedPrincipal | null> {
  if (!hasValidChecksum(key, SERVICE_KEY_PREFIX)) return null;
  const hash = sha256(key);
  const row = await deps.caches.auth.read('service_key', hash, () => findServiceKeyByHash(deps.db.kysely, hash));
  if (!row || row.revoked_at !== null) return null;
  deps.lastUsed.mark('service_keys', row.id, deps.clock.now());
  return {
    principal: { kind: 'service', tenantId: row.tenant_id, serviceKeyId: row.id },
    validUntil: Number.POSITIVE_INFINITY,
  };
}
