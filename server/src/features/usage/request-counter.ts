import { bucketStart } from './periods.js';
import type { UsageDelta, UsageEventRow } from './usage.repo.js';

/**
 * Usage records are written behind: plain API requests are counted in memory, and metered calls
 * (LLM calls, credit charges) queue their usage event and rollup delta, all written in one
 * transaction every second (and at shutdown, and before this instance answers a usage query). A
 * database write per request would cost more than the request. The token budget is the exact
 * account: direct reservations write it at once, and the LLM gateway's charges are written in the
 * same transaction as these records (ADR 0007, 0011). Limits do not read them; they have their
 * own exact counters.
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
  // Deltas merged per (tenant, user, key, model, provider, hour) as they come, so a flush writes
  // one rollup change per combination, however many calls there were.
  let pending = new Map<string, UsageDelta>();
  let events: UsageEventRow[] = [];
  /** The pending delta of this combination and hour, made empty the first time. */
  const entry = (
    tenantId: string,
    userId: string,
    apiKeyId: string | null,
    model: string | null,
    provider: string | null,
    at: number,
  ): UsageDelta => {
    const hour = bucketStart('hour', at);
    const key = `${tenantId}\u0000${userId}\u0000${apiKeyId ?? ''}\u0000${model ?? ''}\u0000${provider ?? ''}\u0000${hour}`;
    let existing = pending.get(key);
    if (!existing) {
      existing = {
        tenantId,
        userId,
        apiKeyId,
        model,
        provider,
        at: hour,
        requests: 0,
        llmRequests: 0,
        errors: 0,
        promptTokens: 0,
        completionTokens: 0,
        costMicros: 0,
      };
      pending.set(key, existing);
    }
    return existing;
  };
  const merge = (delta: UsageDelta) => {
    const existing = entry(delta.tenantId, delta.userId, delta.apiKeyId, delta.model, delta.provider, delta.at);
    existing.requests += delta.requests;
    existing.llmRequests += delta.llmRequests;
    existing.errors += delta.errors;
    existing.promptTokens += delta.promptTokens;
    existing.completionTokens += delta.completionTokens;
    existing.costMicros += delta.costMicros;
  };
  return {
    add(tenantId, userId, apiKeyId, at) {
      entry(tenantId, userId, apiKeyId, null, null, at).requests += 1;
    },
    record(event, delta) {
      events.push(event);
      merge(delta);
    },
    drain() {
      const batch = { events, deltas: [...pending.values()] };
      pending = new Map();
      events = [];
      return batch;
    },
    restore(batch) {
      events = [...batch.events, ...events];
      for (const delta of batch.deltas) merge(delta);
    },
  };
}
