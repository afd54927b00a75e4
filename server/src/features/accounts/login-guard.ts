import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';

// Attempts allowed per (tenant, email, ip) and per ip in an hour; a success gives its point back.
// Keying the account limit by ip too means an attacker hammering a victim's email from their
// addresses blocks only themselves; the owner still signs in from anywhere else (issue 2).
// No extra block duration: points are taken before the password is checked, so a burst of
// correct sign-ins must not leave a lasting block behind once their points are returned.
const ACCOUNT_FAILURES = { points: 10, duration: 3600 };
const IP_FAILURES = { points: 100, duration: 3600 };

interface Guard {
  byAccount: RateLimiterAbstract;
  byIp: RateLimiterAbstract;
}

const guards = new WeakMap<Deps, Guard>();

function guardOf(deps: Deps): Guard {
  let guard = guards.get(deps);
  if (!guard) {
    // A guard that cannot count must not let guesses through unbounded, nor lock everyone out:
    // while the shared store fails, each instance counts in memory (OWASP ASVS 5.0 V6.3.1).
    const local = { countLocallyOnFailure: true };
    guard = {
      byAccount: deps.limiters.create({ keyPrefix: 'login_fail_account', ...ACCOUNT_FAILURES, ...local }),
      byIp: deps.limiters.create({ keyPrefix: 'login_fail_ip', ...IP_FAILURES, ...local }),
    };
    guards.set(deps, guard);
  }
  return guard;
}

export interface Attempt {
  tenantId: string;
  email: string;
  ip: string | null;
}

const keys = (attempt: Attempt) => ({
  account: `${attempt.tenantId}:${attempt.email}:${attempt.ip ?? '-'}`,
  ip: attempt.ip ?? '-',
});

export interface AttemptTicket {
  /** The password was right: forget this pair's failures and give the ip its point back. */
  succeeded(): Promise<void>;
  /** The password was never checked (overload, error): give back both points. */
  abandoned(): Promise<void>;
}

/**
 * Counts a sign-in attempt *before* the password is checked, so that guesses sent in parallel
 * cannot all pass a check that only reads the counters, and throws 429 with Retry-After when this
 * email from this ip, or this ip, is over its limit. A wrong password simply keeps its point.
 */
export async function beginAttempt(deps: Deps, attempt: Attempt): Promise<AttemptTicket> {
  const guard = guardOf(deps);
  const k = keys(attempt);
  const counters = [
    [guard.byAccount, k.account],
    [guard.byIp, k.ip],
  ] as const;
  const results = await Promise.allSettled(counters.map(([limiter, key]) => limiter.consume(key)));
  let waitMs = 0;
  for (const result of results) {
    if (result.status === 'fulfilled') continue;
    if (result.reason instanceof Error) {
      // Neither the store nor the in-memory insurance counted: refuse rather than let an
      // uncounted guess through, and give back what was counted.
      deps.log.error({ err: result.reason }, 'login guard cannot count; sign-in refused');
      await Promise.allSettled(
        counters.map(([limiter, key], i) => (results[i]?.status === 'fulfilled' ? limiter.reward(key, 1) : null)),
      );
      throw new AppError('limits_unavailable', 'Sign-in is unavailable for a moment; retry shortly', {
        headers: { 'retry-after': '1' },
      });
    }
    waitMs = Math.max(waitMs, (result.reason as { msBeforeNext: number }).msBeforeNext);
  }
  if (waitMs > 0) {
    const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
    throw new AppError('too_many_attempts', 'Too many failed sign-in attempts; try again later', {
      headers: { 'retry-after': String(retryAfter) },
      details: { retry_after_seconds: retryAfter },
    });
  }
  return {
    async succeeded() {
      await Promise.allSettled([guard.byAccount.delete(k.account), guard.byIp.reward(k.ip, 1)]);
    },
    async abandoned() {
      await Promise.allSettled([guard.byAccount.reward(k.account, 1), guard.byIp.reward(k.ip, 1)]);
    },
  };
}
