import { type RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { BudgetOwner } from './budget.service.js';

/** One counted limit after a hit: what the RateLimit-* headers and verify's `ratelimits` report. */
export interface LimitState {
  name: string;
  limit: number;
  remaining: number;
  /** Epoch ms when the window ends. */
  resetAt: number;
  exceeded: boolean;
}

export interface LimitSpec {
  name: string;
  /** The counter: who or what is counted (e.g. `req:<tenant>:<user>`). */
  subject: string;
  limit: number;
  windowSeconds: number;
  cost?: number;
}

export const HOUR_SECONDS = 3600;

// The limiter itself never refuses (its points are out of reach): it counts atomically in the
// shared store and Gatehouse compares the count with the caller's limit. So one limiter serves
// every plan, and a plan change applies to the count already made this hour. Out of reach means
// 2^53 - 1: verify's costs pass 2^31 within an hour, and every store counts in 64 bits
// (rate_limits.points is bigint on PostgreSQL, Redis INCRBY is 64-bit).
const UNREACHABLE = Number.MAX_SAFE_INTEGER;
const limiters = new WeakMap<Deps, Map<number, RateLimiterAbstract>>();

function limiterFor(deps: Deps, windowSeconds: number): RateLimiterAbstract {
  let byWindow = limiters.get(deps);
  if (!byWindow) {
    byWindow = new Map();
    limiters.set(deps, byWindow);
  }
  let limiter = byWindow.get(windowSeconds);
  if (!limiter) {
    limiter = deps.limiters.create({
      keyPrefix: `limit${windowSeconds}`,
      points: UNREACHABLE,
      duration: windowSeconds,
    });
    byWindow.set(windowSeconds, limiter);
  }
  return limiter;
}

/**
 * Counts `cost` against each limit (fixed windows that start at the first hit) and reports them all.
 * A hit over the limit still counts, so a client hammering a closed window does not reopen it early.
 */
export function hitLimits(deps: Deps, specs: LimitSpec[]): Promise<LimitState[]> {
  const stateOf = (spec: LimitSpec, res: RateLimiterRes): LimitState => ({
    name: spec.name,
    limit: spec.limit,
    remaining: Math.max(0, spec.limit - res.consumedPoints),
    resetAt: deps.clock.now() + res.msBeforeNext,
    exceeded: res.consumedPoints > spec.limit,
  });
  // A refusal by the limiter (a RateLimiterRes, not an Error) is a count past its points, never a
  // store failure: it must not turn into 503 for the rest of the window.
  const consume = (spec: LimitSpec) =>
    limiterFor(deps, spec.windowSeconds)
      .consume(spec.subject, spec.cost ?? 1)
      .catch((refusal: unknown) => {
        if (refusal instanceof RateLimiterRes) return refusal;
        throw refusal;
      });
  // One limit is the common case (a plan, no key limit): one promise, no Promise.all.
  const counted =
    specs.length === 1
      ? consume(specs[0]).then((res) => [stateOf(specs[0], res)], storeFailure)
      : Promise.all(specs.map((spec) => consume(spec).then((res) => stateOf(spec, res)))).catch(storeFailure);
  return counted;
}

/** Only a store failure gets here (the limiter never refuses): fail-closed mode, or a broken store. */
function storeFailure(error: unknown): never {
  throw new AppError('limits_unavailable', 'Rate limiting is unavailable; retry shortly', {
    headers: { 'retry-after': '5' },
    cause: error,
  });
}

/** Reads the counts without counting (for GET /api/usage). */
export async function peekLimits(deps: Deps, specs: LimitSpec[]): Promise<LimitState[]> {
  return Promise.all(
    specs.map(async (spec) => {
      const res = await limiterFor(deps, spec.windowSeconds)
        .get(spec.subject)
        .catch(() => null);
      const used = res?.consumedPoints ?? 0;
      return {
        name: spec.name,
        limit: spec.limit,
        remaining: Math.max(0, spec.limit - used),
        resetAt: deps.clock.now() + (res?.msBeforeNext ?? spec.windowSeconds * 1000),
        exceeded: used > spec.limit,
      };
    }),
  );
}

/** The hourly request limits that apply to a user's request: the plan's (per user) and the key's own (per key). */
export function requestLimitSpecs(owner: BudgetOwner, kind: 'requests' | 'llm_requests'): LimitSpec[] {
  const { limits, tenantId, userId, apiKeyId } = owner;
  const planLimit = kind === 'requests' ? limits.requestsPerHour : limits.llmRequestsPerHour;
  const keyLimit = kind === 'requests' ? limits.key?.requestsPerHour : limits.key?.llmRequestsPerHour;
  const specs: LimitSpec[] = [];
  if (planLimit !== null) {
    specs.push({ name: kind, subject: `${kind}:${tenantId}:${userId}`, limit: planLimit, windowSeconds: HOUR_SECONDS });
  }
  if (keyLimit != null && apiKeyId) {
    specs.push({
      name: `key_${kind}`,
      subject: `${kind}:${tenantId}:${apiKeyId}`,
      limit: keyLimit,
      windowSeconds: HOUR_SECONDS,
    });
  }
  return specs;
}

/** The limit closest to running out (or already out): the one the headers describe. */
function tightest(states: LimitState[]): LimitState {
  return states.reduce((a, b) =>
    a.exceeded !== b.exceeded
      ? a.exceeded
        ? a
        : b
      : a.remaining !== b.remaining
        ? a.remaining < b.remaining
          ? a
          : b
        : a.resetAt >= b.resetAt
          ? a
          : b,
  );
}

/**
 * Sets RateLimit-Limit/Remaining/Reset (draft-ietf-httpapi-ratelimit-headers, delta seconds) and,
 * when a limit is exceeded, throws the 429 with Retry-After.
 */
export function applyLimitStates(
  deps: Deps,
  reply: HeaderSink,
  states: LimitState[],
  headerNames: LimitHeaderNames = RATE_LIMIT_HEADERS,
): void {
  if (states.length === 0) return;
  const worst = tightest(states);
  const resetSeconds = Math.max(0, Math.ceil((worst.resetAt - deps.clock.now()) / 1000));
  reply.header(headerNames.limit, String(worst.limit));
  reply.header(headerNames.remaining, String(worst.remaining));
  reply.header(headerNames.reset, headerNames.formatReset?.(resetSeconds) ?? String(resetSeconds));
  if (!worst.exceeded) return;
  const retryAfter = Math.max(1, resetSeconds);
  throw new AppError(
    'rate_limited',
    `Rate limit exceeded (${worst.name}: ${worst.limit} per hour); retry in ${retryAfter} s`,
    {
      headers: { 'retry-after': String(retryAfter) },
      details: { limit: worst.name, limit_value: worst.limit, retry_after_seconds: retryAfter },
    },
  );
}

/** Where limit headers go: a reply, or a collector where there is none (a realtime socket). */
export interface HeaderSink {
  header(name: string, value: string): unknown;
}

export interface LimitHeaderNames {
  limit: string;
  remaining: string;
  reset: string;
  /** How the reset is written; seconds by default. */
  formatReset?: (seconds: number) => string;
}

export const RATE_LIMIT_HEADERS: LimitHeaderNames = {
  limit: 'ratelimit-limit',
  remaining: 'ratelimit-remaining',
  reset: 'ratelimit-reset',
};
