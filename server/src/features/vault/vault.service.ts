import { transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField, notFound } from '../../errors.js';
import type { Actor, ClientInfo, Principal } from '../../http/principal.js';
import { open, seal } from '../../lib/aead.js';
import { reachOf, requireManageableUser } from '../accounts/accounts.admin.service.js';
import { recordAudit } from '../audit/audit.service.js';
import {
  type ConnectionRow,
  connectionsBelowVersion,
  countBelowVersion,
  deleteConnectionRow,
  findConnection,
  listConnectionRows,
  reseal,
  upsertConnection,
} from './connections.repo.js';
import { vaultKeysOf } from './vault-keys.js';
import { refreshConnection, refreshDue, revokeAtProvider } from './vault-oauth.js';

/** Whose connections a call is about: the tenant and the owner (a Gatehouse user id, or the app's own id). */
export interface VaultOwner {
  tenantId: string;
  owner: string;
  /** Set when the owner is a Gatehouse user. */
  userId: string | null;
}

/** Gatehouse user ids look like this; an app's own ids must not (so the two never collide). */
const GATEHOUSE_USER = /^usr_/;

/** At most this much JSON per connection. */
const MAX_AUTH_DATA_BYTES = 64 * 1024;

/**
 * The owner of a vault call. A user's credential: their own connections (naming another user is
 * refused). A service key: the user named by `user_id`, a Gatehouse user id of the tenant or the
 * app's own id for its user (seed 004's "user123").
 */
export async function vaultOwner(deps: Deps, principal: Principal, userId: string | undefined): Promise<VaultOwner> {
  if (principal.kind === 'user') {
    if (userId !== undefined && userId !== principal.userId) {
      throw new AppError(
        'forbidden',
        'A user reaches only their own connections; an app backend names users with a service key',
      );
    }
    return { tenantId: principal.tenantId, owner: principal.userId, userId: principal.userId };
  }
  if (userId === undefined)
    throw invalidField('user_id', 'is required with a service key: whose connection', { in: 'querystring' });
  if (GATEHOUSE_USER.test(userId)) {
    // Never the vault of an account above a service key's reach (an operator's; ADR 0013).
    const user = await requireManageableUser(deps, principal.tenantId, userId, reachOf(principal));
    return { tenantId: principal.tenantId, owner: user.id, userId: user.id };
  }
  return { tenantId: principal.tenantId, owner: userId, userId: null };
}

/** The ciphertext is bound to its tenant, owner and service: it cannot be moved to another row. */
const dataAad = (owner: VaultOwner | { tenantId: string; owner: string }, service: string) =>
  `connection:${owner.tenantId}:${owner.owner}:${service}`;

export async function sealAuthData(deps: Deps, owner: VaultOwner, service: string, authData: unknown) {
  const { version, key } = await vaultKeysOf(deps).current(owner.tenantId);
  return { sealed: seal(key, JSON.stringify(authData), dataAad(owner, service)), version };
}

/** Opens a connection's auth data; a ciphertext that fails its check is an error, never garbage. */
export async function openAuthData(deps: Deps, row: ConnectionRow): Promise<unknown> {
  const key = await vaultKeysOf(deps).key(row.tenant_id, row.key_version);
  try {
    return JSON.parse(
      open(key, row.auth_data_sealed, dataAad({ tenantId: row.tenant_id, owner: row.owner }, row.service)).toString(
        'utf8',
      ),
    );
  } catch (error) {
    deps.log.error(
      { connection: row.id, tenant: row.tenant_id, err: error },
      'vault: stored auth data failed its integrity check',
    );
    throw new AppError('integrity_failure', 'The stored auth data failed its integrity check and was not returned', {
      cause: error,
    });
  }
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function present(
  row: Pick<ConnectionRow, 'owner' | 'service' | 'expires_at' | 'created_at' | 'updated_at' | 'status' | 'provider_id'>,
) {
  return {
    service: row.service,
    user_id: row.owner,
    oauth: row.provider_id !== null,
    status: row.status,
    expires_at: iso(row.expires_at),
    created_at: iso(row.created_at) as string,
    updated_at: iso(row.updated_at) as string,
  };
}

/**
 * When the auth data expires: `expires_at` as given, else derived from an OAuth2 `expires_in`
 * (seconds) in the data, else never.
 */
function expiryOf(deps: Deps, authData: unknown, expiresAt: string | null | undefined): number | null {
  if (expiresAt !== undefined && expiresAt !== null) {
    const ms = Date.parse(expiresAt);
    if (Number.isNaN(ms)) throw invalidField('expires_at', 'must be an ISO 8601 date-time');
    return ms;
  }
  const expiresIn = (authData as { expires_in?: unknown } | null)?.expires_in;
  if (expiresAt === undefined && typeof expiresIn === 'number' && expiresIn > 0) {
    return deps.clock.now() + Math.round(expiresIn * 1000);
  }
  return null;
}

/** saveAuth: stores any JSON for the owner and service, replacing what was there; true when created. */
export async function saveAuth(
  deps: Deps,
  owner: VaultOwner,
  service: string,
  input: { auth_data: unknown; expires_at?: string | null },
  actor: Actor,
  client: ClientInfo,
  /** The OAuth provider that issued the data (it can refresh it); none for data saved as is. */
  providerId: string | null = null,
) {
  if (input.auth_data === undefined || input.auth_data === null)
    throw invalidField('auth_data', 'is required (any JSON)');
  if (Buffer.byteLength(JSON.stringify(input.auth_data)) > MAX_AUTH_DATA_BYTES) {
    throw invalidField('auth_data', `must be at most ${MAX_AUTH_DATA_BYTES} bytes of JSON`);
  }
  const expiresAt = expiryOf(deps, input.auth_data, input.expires_at);
  const { sealed, version } = await sealAuthData(deps, owner, service, input.auth_data);
  const now = deps.clock.now();
  const stored = await transaction(deps.db.kysely, async (trx) => {
    const row = await upsertConnection(trx, {
      id: deps.ids.next('con'),
      tenant_id: owner.tenantId,
      owner: owner.owner,
      user_id: owner.userId,
      service,
      auth_data_sealed: sealed,
      key_version: version,
      expires_at: expiresAt,
      created_at: now,
      updated_at: now,
      provider_id: providerId,
      status: 'active',
      refresh_lock_until: null,
      refresh_failures: 0,
      next_refresh_at: null,
      last_error: null,
    });
    await recordAudit(trx, deps, {
      tenantId: owner.tenantId,
      action: 'connection.saved',
      actor,
      target: { type: 'connection', id: row.id },
      client,
      // Whose and which, never the data.
      data: { service, user_id: owner.owner },
    });
    return row;
  });
  return { connection: present(stored), created: stored.created_at === now && stored.updated_at === now };
}

async function requireConnection(deps: Deps, owner: VaultOwner, service: string): Promise<ConnectionRow> {
  const row = await findConnection(deps.db.kysely, owner.tenantId, owner.owner, service);
  if (!row) throw notFound('Connection');
  return row;
}

/**
 * getAuth: the auth data as saved. An OAuth connection expiring within VAULT_REFRESH_SKEW is
 * refreshed first (one refresh per connection across instances; the others wait for it). If the
 * refresh fails while the token is still valid, the valid token is returned; once it has expired,
 * the failure is the answer.
 */
export async function getAuth(deps: Deps, owner: VaultOwner, service: string) {
  let row = await requireConnection(deps, owner, service);
  if (refreshDue(deps, row)) {
    const now = deps.clock.now();
    const expired = row.expires_at !== null && row.expires_at <= now;
    const backingOff = row.next_refresh_at !== null && row.next_refresh_at > now;
    if (!backingOff) {
      try {
        row = await refreshConnection(deps, row);
      } catch (error) {
        if (expired || (error instanceof AppError && error.code === 'conflict')) throw error;
      }
    } else if (expired) {
      throw new AppError('upstream_unavailable', `${service} could not refresh the connection (${row.last_error})`, {
        details: { retry_at: new Date(row.next_refresh_at ?? now).toISOString() },
      });
    }
  }
  if (row.status === 'needs_reauth') {
    throw new AppError('conflict', `The ${service} connection needs to be authorized again (${row.last_error})`, {
      details: { status: 'needs_reauth', reason: row.last_error },
    });
  }
  return { ...present(row), auth_data: await openAuthData(deps, row) };
}

/** refreshAuth: refreshes an OAuth connection now (whatever its expiry). */
export async function refreshAuth(deps: Deps, owner: VaultOwner, service: string) {
  const row = await requireConnection(deps, owner, service);
  if (row.provider_id === null) {
    throw new AppError(
      'conflict',
      `The ${service} connection was saved as is, not through OAuth: nothing refreshes it`,
    );
  }
  const refreshed = await refreshConnection(deps, row);
  return { ...present(refreshed), auth_data: await openAuthData(deps, refreshed) };
}

/** revokeAuth: revokes the tokens at the provider when it can (best effort), then forgets the connection. */
export async function revokeAuth(deps: Deps, owner: VaultOwner, service: string, actor: Actor, client: ClientInfo) {
  const row = await requireConnection(deps, owner, service);
  const revoked = await revokeAtProvider(deps, row);
  await transaction(deps.db.kysely, async (trx) => {
    await deleteConnectionRow(trx, owner.tenantId, row.id);
    await recordAudit(trx, deps, {
      tenantId: owner.tenantId,
      action: 'connection.deleted',
      actor,
      target: { type: 'connection', id: row.id },
      client,
      data: { service, user_id: owner.owner, revoked_at_provider: revoked },
    });
  });
  return { revoked_at_provider: revoked };
}

/** The connections of one owner, or (service key without user_id) of the whole tenant; never their data. */
export async function listConnections(
  deps: Deps,
  tenantId: string,
  filter: { owner?: string; cursor?: string; limit?: number },
) {
  const limit = filter.limit ?? 50;
  const rows = await listConnectionRows(deps.db.kysely, tenantId, { owner: filter.owner, after: filter.cursor, limit });
  const page = rows.slice(0, limit);
  return { data: page.map(present), next_cursor: rows.length > limit ? (page.at(-1)?.id ?? null) : null };
}

/**
 * `gatehouse keys rotate-vault`: for every tenant with connections, a new data key version, then
 * every connection re-encrypted under it, one at a time (read, opened, sealed anew, written only if
 * unchanged meanwhile, else read again). Readers use each row's version, so the service keeps
 * answering throughout. A connection that fails its integrity check is left as it is and named in
 * `failed` (the rest go on). `progress` is told the total first, then each connection done.
 */
export async function rotateVault(
  deps: Deps,
  progress: { start(total: number): void; tick(): void },
): Promise<{ tenants: number; reencrypted: number; failed: string[] }> {
  const db = deps.db.kysely;
  const tenants = await db.selectFrom('connections').select('tenant_id').distinct().execute();
  progress.start(await countBelowVersion(db, null));
  let reencrypted = 0;
  const failed: string[] = [];
  const keys = vaultKeysOf(deps);
  for (const { tenant_id: tenantId } of tenants) {
    const version = await keys.rotate(tenantId);
    const key = await keys.key(tenantId, version);
    let after: string | undefined;
    for (;;) {
      const batch = await connectionsBelowVersion(db, tenantId, version, 200, after);
      if (batch.length === 0) break;
      after = batch.at(-1)?.id;
      for (const { id } of batch) {
        for (let attempt = 0; attempt < 5; attempt++) {
          const row = await db.selectFrom('connections').selectAll().where('id', '=', id).executeTakeFirst();
          if (!row || row.key_version >= version) break; // gone, or rewritten under the newest key
          let plain: string;
          try {
            plain = JSON.stringify(await openAuthData(deps, row));
          } catch {
            failed.push(id);
            break;
          }
          const sealed = seal(key, plain, dataAad({ tenantId, owner: row.owner }, row.service));
          if (await reseal(db, row, sealed, version)) {
            reencrypted++;
            break;
          }
        }
        progress.tick();
      }
    }
  }
  return { tenants: tenants.length, reencrypted, failed };
}
