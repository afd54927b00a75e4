import { LRUCache } from 'lru-cache';

/**
 * Read-through caches of what authenticating a request needs (sessions, keys, users), so a hot
 * credential costs memory lookups instead of queries (ADR 0004).
 *
 * Every write that can revoke or change a credential or a user calls `clear()` after its commit:
 * on this instance the change takes effect at once. Other instances see it within the TTL
 * (AUTH_CACHE_TTL, 2 s by default); SQLite mode has one instance, so there it is always exact.
 * A generation counter stops a read that started before a `clear()` from caching what it read.
 */
export interface AuthCache {
  read<T extends object>(kind: CacheKind, key: string, load: () => Promise<T | undefined>): Promise<T | undefined>;
  clear(): void;
}

export type CacheKind = 'session' | 'api_key' | 'service_key' | 'user';

export function createAuthCache(ttlMs: number): AuthCache {
  let generation = 0;
  const entries = new LRUCache<string, object>({ max: 50_000, ttl: Math.max(ttlMs, 1) });
  return {
    async read<T extends object>(kind: CacheKind, key: string, load: () => Promise<T | undefined>) {
      if (ttlMs === 0) return load();
      const cacheKey = `${kind}:${key}`;
      const hit = entries.get(cacheKey);
      if (hit) return hit as T;
      const seen = generation;
      const value = await load();
      if (value !== undefined && seen === generation) entries.set(cacheKey, value);
      return value;
    },
    clear() {
      generation++;
      entries.clear();
    },
  };
}
