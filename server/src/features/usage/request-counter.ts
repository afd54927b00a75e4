import { bucketStart } from './periods.js';
import type { UsageDelta } from './usage.repo.js';

/**
 * Plain API requests are counted in memory and added to the rollups every few seconds (and at
 * shutdown, and before this instance answers a usage query), like `last_used_at`: a database
 * write per request would cost more than the request. Limits do not read these counts; they have
 * their own exact counters.
 */
export interface RequestCounter {
  add(tenantId: string, userId: string, apiKeyId: string | null, at: number): void;
  /** Takes everything counted so far. */
  drain(): UsageDelta[];
  /** Puts back what could not be written, to try again at the next flush. */
  restore(deltas: UsageDelta[]): void;
}

export function createRequestCounter(): RequestCounter {
  let pending = new Map<string, UsageDelta>();
  const count = (tenantId: string, userId: string, apiKeyId: string | null, hour: number, requests: number) => {
    const key = `${tenantId}\u0000${userId}\u0000${apiKeyId ?? ''}\u0000${hour}`;
    const existing = pending.get(key);
    if (existing) {
      existing.requests += requests;
      return;
    }
    pending.set(key, {
      tenantId,
      userId,
      apiKeyId,
      model: null,
      provider: null,
      at: hour,
      requests,
      llmRequests: 0,
      errors: 0,
      promptTokens: 0,
      completionTokens: 0,
      costMicros: 0,
    });
  };
  return {
    add: (tenantId, userId, apiKeyId, at) => count(tenantId, userId, apiKeyId, bucketStart('hour', at), 1),
    drain() {
      const batch = [...pending.values()];
      pending = new Map();
      return batch;
    },
    restore(deltas) {
      for (const d of deltas) count(d.tenantId, d.userId, d.apiKeyId, d.at, d.requests);
    },
  };
}
