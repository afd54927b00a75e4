import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Deps } from '../../deps.js';
import type { ChatRequest } from './chat.service.js';

/** A provider's 200 answer, kept to answer the same request again. */
export interface CachedAnswer {
  text: string;
  provider: string;
  model: string;
  promptTokens: number;
  completionTokens: number;
}

/**
 * The optional response cache (per tenant, off by default): identical non-streaming requests
 * with `temperature: 0` are answered from here. In Redis when REDIS_URL is set (shared by every
 * instance), else in this instance's memory (at most 64 MB). A cache that fails is a miss: the
 * call goes to the provider.
 */
export interface ResponseCache {
  get(key: string): Promise<CachedAnswer | undefined>;
  set(key: string, answer: CachedAnswer, ttlSeconds: number): Promise<void>;
}

/** Only what cannot vary between two runs is cached: no streams, no sampling. */
export function cacheable(body: ChatRequest): boolean {
  return body.stream !== true && body.temperature === 0 && (body.n === undefined || body.n === 1);
}

/** The tenant and the request as sent (model, messages, every parameter), hashed. */
export function cacheKey(tenantId: string, body: ChatRequest): string {
  return `gatehouse:llm-cache:${tenantId}:${createHash('sha256').update(JSON.stringify(body)).digest('base64url')}`;
}

const caches = new WeakMap<Deps, ResponseCache>();

export function responseCacheOf(deps: Deps): ResponseCache {
  let cache = caches.get(deps);
  if (!cache) {
    cache = deps.redis ? redisCache(deps) : memoryCache();
    caches.set(deps, cache);
  }
  return cache;
}

function memoryCache(): ResponseCache {
  const entries = new LRUCache<string, CachedAnswer>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (answer) => answer.text.length + 200,
    ttlAutopurge: false,
  });
  return {
    async get(key) {
      return entries.get(key);
    },
    async set(key, answer, ttlSeconds) {
      entries.set(key, answer, { ttl: ttlSeconds * 1000 });
    },
  };
}

function redisCache(deps: Deps): ResponseCache {
  const redis = deps.redis!;
  const failed = (error: unknown) =>
    deps.log.warn({ err: error }, 'LLM response cache unavailable; calling the provider');
  return {
    async get(key) {
      try {
        const text = await redis.get(key);
        return text ? (JSON.parse(text) as CachedAnswer) : undefined;
      } catch (error) {
        failed(error);
        return undefined;
      }
    },
    async set(key, answer, ttlSeconds) {
      try {
        await redis.set(key, JSON.stringify(answer), { EX: ttlSeconds });
      } catch (error) {
        failed(error);
      }
    },
  };
}
