import { bucketStart } from './periods.js';
import type { UsageDelta, UsageEventRow } from './usage.repo.js';

/**
 * Usage records are written behind: plain API requests are counted in memory, and metered calls
 * (LLM calls, credit charges) queue their usage event and rollup delta, all written in one
 * transaction every second (and at shutdown, and before this instance answers a usage query). A
 * database write per request would cost more than the request. What is exact and written at once
 * is the token budget (ADR 0007, 0008); these are the records of it. Limits do not read them; they
 * have their own exact counters.
 */
export interface RequestCounter {
  add(tenantId: string, userId: string, apiKeyId: string | null, at: number): void;
  /** Queues a metered call's usage event and what it adds to the rollups. */
  record(event: UsageEventRow, delta: UsageDelta): void;
  /** Takes everything queued so far. */
  drain(): UsageBatch;
  /** Puts back what could not be written, to try again at the next flush. */
  restore(batch: UsageBatch): void;
}

export interface UsageBatch {
  events: UsageEventRow[];
  deltas: UsageDelta[];
}

export function createRequestCounter(): RequestCounter {
  let pending = new Map<string, UsageDelta>();
  let events: UsageEventRow[] = [];
  let deltas: UsageDelta[] = [];
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
    record(event, delta) {
      events.push(event);
      deltas.push(delta);
    },
    drain() {
      const batch = { events, deltas: [...pending.values(), ...deltas] };
      pending = new Map();
      events = [];
      deltas = [];
      return batch;
    },
    restore(batch) {
      events = [...batch.events, ...events];
      deltas = [...batch.deltas, ...deltas];
    },
  };
}
