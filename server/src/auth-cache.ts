import { LRUCache } from 'lru-cache';
import type { Principal } from './http/principal.js';

/**
 * Read-through caches of what authenticating a request needs (sessions, keys, users, tenants and
 * their CORS origins) and of the principals resolved from recent Authorization headers, so a hot credential costs memory lookups
 * instead of queries and signature checks (ADR 0004).
 *
 * Every write that can revoke or change a credential, a user or a tenant calls `clear()` after its commit:
 * on this instance the change takes effect at once. Other instances see it within the TTL
 * (AUTH_CACHE_TTL, 2 s by default); SQLite mode has one instance, so there it is always exact.
 * Version counters stop a read that started before a `forget()` or `clear()` from caching what it
 * read: one per entry (so a write to one user's budget does not keep every other entry from being
 * cached under load), and one for principals, moved only by what a principal is made of.
 */
export interface AuthCache {
  read<T extends object>(kind: CacheKind, key: string, load: () => Promise<T | undefined>): Promise<T | undefined>;
  /** The cached value, if any, without loading (for synchronous fast paths). */
  peek<T extends object>(kind: CacheKind, key: string): T | undefined;
  /** The principal cached for this exact Authorization header, if still valid at `now`. */
  principal(authorization: string, now: number): ResolvedPrincipal | undefined;
  /** Remembers a resolved principal until `validUntil` (token or key expiry) or the TTL. */
  rememberPrincipal(authorization: string, resolved: ResolvedPrincipal, seenGeneration: number): void;
  generation(): number;
  /** Drops one entry (a write changed it), and keeps reads already in flight from caching the old value. */
  forget(kind: CacheKind, key: string): void;
  clear(): void;
}

export interface ResolvedPrincipal {
  principal: Principal;
  /** Epoch ms after which the credential is no longer valid, whatever the cache says. */
  validUntil: number;
}

export type CacheKind = 'session' | 'api_key' | 'service_key' | 'me' | 'tenant' | 'origins' | 'plan' | 'llm';

/** Entries that principals are not built from: forgetting one leaves cached principals alone. */
const NOT_OF_PRINCIPALS: ReadonlySet<CacheKind> = new Set(['me', 'llm']);

export function createAuthCache(ttlMs: number): AuthCache {
  let generation = 0;
  const ttl = Math.max(ttlMs, 1);
  const entries = new LRUCache<string, object>({ max: 50_000, ttl });
  const principals = new LRUCache<string, ResolvedPrincipal>({ max: 50_000, ttl });
  /** Per entry: how many times it was forgotten (recently; a read outliving 100,000 others is not a concern). */
  const versions = new LRUCache<string, number>({ max: 100_000 });
  return {
    async read<T extends object>(kind: CacheKind, key: string, load: () => Promise<T | undefined>) {
      if (ttlMs === 0) return load();
      const cacheKey = `${kind}:${key}`;
      const hit = entries.get(cacheKey);
      if (hit) return hit as T;
      const seen = generation;
      const seenVersion = versions.get(cacheKey);
      const value = await load();
      if (value !== undefined && seen === generation && seenVersion === versions.get(cacheKey)) {
        entries.set(cacheKey, value);
      }
      return value;
    },
    peek<T extends object>(kind: CacheKind, key: string) {
      return entries.get(`${kind}:${key}`) as T | undefined;
    },
    principal(authorization, now) {
      const hit = principals.get(authorization);
      return hit && hit.validUntil > now ? hit : undefined;
    },
    rememberPrincipal(authorization, resolved, seenGeneration) {
      if (ttlMs > 0 && seenGeneration === generation) principals.set(authorization, resolved);
    },
    generation: () => generation,
    forget(kind, key) {
      const cacheKey = `${kind}:${key}`;
      versions.set(cacheKey, (versions.get(cacheKey) ?? 0) + 1);
      if (!NOT_OF_PRINCIPALS.has(kind)) generation++;
      entries.delete(cacheKey);
    },
    clear() {
      generation++;
      entries.clear();
      principals.clear();
    },
  };
}
