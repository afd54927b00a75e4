import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';

// Failures allowed per (tenant, email, ip) before that pair is blocked, and per ip overall.
// Keying the account limit by ip too means an attacker hammering a victim's email from their
// addresses blocks only themselves; the owner still signs in from anywhere else (issue 2).
const ACCOUNT_FAILURES = { points: 10, duration: 3600, blockDuration: 900 };
const IP_FAILURES = { points: 100, duration: 3600, blockDuration: 3600 };

interface Guard {
  byAccount: RateLimiterAbstract;
  byIp: RateLimiterAbstract;
}

const guards = new WeakMap<Deps, Guard>();

function guardOf(deps: Deps): Guard {
  let guard = guards.get(deps);
  if (!guard) {
    guard = {
      byAccount: deps.limiter({ keyPrefix: 'login_fail_account', ...ACCOUNT_FAILURES }),
      byIp: deps.limiter({ keyPrefix: 'login_fail_ip', ...IP_FAILURES }),
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

/** Throws 429 with Retry-After when this email from this ip, or this ip, has failed too often. */
export async function assertNotBlocked(deps: Deps, attempt: Attempt): Promise<void> {
  const guard = guardOf(deps);
  const k = keys(attempt);
  const [account, ip] = await Promise.all([guard.byAccount.get(k.account), guard.byIp.get(k.ip)]);
  const blocked = [
    account && account.consumedPoints >= ACCOUNT_FAILURES.points ? account.msBeforeNext : 0,
    ip && ip.consumedPoints >= IP_FAILURES.points ? ip.msBeforeNext : 0,
  ];
  const waitMs = Math.max(...blocked);
  if (waitMs > 0) {
    const retryAfter = String(Math.ceil(waitMs / 1000));
    throw new AppError('too_many_attempts', 'Too many failed sign-in attempts; try again later', {
      headers: { 'retry-after': retryAfter },
      details: { retry_after_seconds: Number(retryAfter) },
    });
  }
}

export async function recordFailure(deps: Deps, attempt: Attempt): Promise<void> {
  const guard = guardOf(deps);
  const k = keys(attempt);
  // A rejection here only means the limit is now reached; the next attempt is refused by assertNotBlocked.
  await Promise.allSettled([guard.byAccount.consume(k.account), guard.byIp.consume(k.ip)]);
}

export async function recordSuccess(deps: Deps, attempt: Attempt): Promise<void> {
  await guardOf(deps).byAccount.delete(keys(attempt).account);
}
