import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';

/**
 * Envelope encryption for the vault: each tenant has data keys (32 random bytes), stored only
 * wrapped by the master key (AES-256-GCM, bound to tenant and version). A connection's auth data is
 * sealed under one data key and names its version, so `gatehouse keys rotate-vault` can add a
 * version and re-encrypt connections one by one while every version stays readable: no downtime.
 * Old versions stay (wrapped, a few bytes each): an instance that read the newest version just
 * before a rotation may still write under it, and must stay readable. The newest version is read
 * at every write (vault writes are not a hot path), so a rotation applies at once everywhere;
 * unwrapped keys of a version are cached (a version never changes).
 */
export interface VaultKeys {
  /** The tenant's newest key, created (version 1) on first use. */
  current(tenantId: string): Promise<{ version: number; key: Buffer }>;
  /** A given version (to open what it sealed). */
  key(tenantId: string, version: number): Promise<Buffer>;
  /** Adds a new newest version; returns it. */
  rotate(tenantId: string): Promise<number>;
}

const wrapAad = (tenantId: string, version: number) => `vault_key:${tenantId}:${version}`;

const caches = new WeakMap<Deps, VaultKeys>();

export function vaultKeysOf(deps: Deps): VaultKeys {
  let keys = caches.get(deps);
  if (!keys) {
    keys = createVaultKeys(deps);
    caches.set(deps, keys);
  }
  return keys;
}

function newestVersion(db: Kysely<Database>, tenantId: string) {
  return db
    .selectFrom('vault_keys')
    .select((eb) => eb.fn.max('version').as('version'))
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst()
    .then((row) => (row?.version === null || row?.version === undefined ? 0 : Number(row.version)));
}

function createVaultKeys(deps: Deps): VaultKeys {
  const db = deps.db.kysely;
  const unwrapped = new Map<string, Buffer>();

  /** Inserts a version if nobody has (two instances may try at once); true when this call did. */
  const insertVersion = async (tenantId: string, version: number) => {
    const result = await db
      .insertInto('vault_keys')
      .values({
        tenant_id: tenantId,
        version,
        wrapped: deps.masterKey.seal(randomBytes(32), wrapAad(tenantId, version)),
        created_at: deps.clock.now(),
      })
      .onConflict((oc) => oc.columns(['tenant_id', 'version']).doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
  };

  const key = async (tenantId: string, version: number) => {
    const cacheKey = `${tenantId}:${version}`;
    const cached = unwrapped.get(cacheKey);
    if (cached) return cached;
    const row = await db
      .selectFrom('vault_keys')
      .select('wrapped')
      .where('tenant_id', '=', tenantId)
      .where('version', '=', version)
      .executeTakeFirst();
    if (!row) throw new Error(`Vault key version ${version} of tenant ${tenantId} is missing`);
    const opened = deps.masterKey.open(row.wrapped, wrapAad(tenantId, version));
    unwrapped.set(cacheKey, opened);
    return opened;
  };

  return {
    key,
    async current(tenantId) {
      let version = await newestVersion(db, tenantId);
      if (version === 0) {
        await insertVersion(tenantId, 1);
        version = await newestVersion(db, tenantId);
      }
      return { version, key: await key(tenantId, version) };
    },
    async rotate(tenantId) {
      let version = (await newestVersion(db, tenantId)) + 1;
      while (!(await insertVersion(tenantId, version))) version++;
      return version;
    },
  };
}
