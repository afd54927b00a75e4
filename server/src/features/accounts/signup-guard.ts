import ipaddr from 'ipaddr.js';
import type { RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';

// Sign-ups per client address per hour, over every tenant: each one costs a password hash and
// makes a row, so an unthrottled flood fills the hashing queue and the users table (OWASP ASVS 5.0
// V2.4.1: anti-automation on functions that create accounts). SIGNUP_LIMIT_PER_IP sets the number.
const WINDOW_SECONDS = 3600;

const limiters = new WeakMap<Deps, RateLimiterAbstract>();

function limiterOf(deps: Deps): RateLimiterAbstract {
  let limiter = limiters.get(deps);
  if (!limiter) {
    limiter = deps.limiters.create({
      keyPrefix: 'signup_ip',
      points: deps.config.signUpsPerIpHourly,
      duration: WINDOW_SECONDS,
      // Like the sign-in guard: counted in memory while the shared store fails, never uncounted.
      countLocallyOnFailure: true,
    });
    limiters.set(deps, limiter);
  }
  return limiter;
}

/**
 * The counted address: IPv4 as it is; IPv6 by its /64, the block one subscriber usually holds
 * (RFC 6177), or every address of it would be a fresh counter.
 */
export function addressKey(ip: string | null): string {
  if (!ip) return '-';
  try {
    const address = ipaddr.process(ip);
    if (address.kind() === 'ipv4') return address.toString();
    const parts = (address as ipaddr.IPv6).parts.slice(0, 4);
    return `${new ipaddr.IPv6([...parts, 0, 0, 0, 0]).toString()}/64`;
  } catch {
    return ip;
  }
}

export interface SignUpTicket {
  /** The sign-up was never tried (overload): give its point back. */
  abandoned(): Promise<void>;
}

/**
 * Counts a sign-up from this address before any work is done; throws 429 rate_limited with
 * Retry-After beyond the limit, and 503 when the counter cannot count at all.
 */
export async function beginSignUp(deps: Deps, ip: string | null): Promise<SignUpTicket> {
  const limiter = limiterOf(deps);
  const key = addressKey(ip);
  try {
    await limiter.consume(key);
  } catch (error) {
    if (error instanceof Error) {
      deps.log.error({ err: error }, 'sign-up limit cannot count; sign-up refused');
      throw new AppError('limits_unavailable', 'Sign-up is unavailable for a moment; retry shortly', {
        headers: { 'retry-after': '1' },
      });
    }
    const retryAfter = Math.max(1, Math.ceil((error as RateLimiterRes).msBeforeNext / 1000));
    throw new AppError('rate_limited', 'Too many sign-ups from this address; try again later', {
      headers: { 'retry-after': String(retryAfter) },
      details: { retry_after_seconds: retryAfter },
    });
  }
  return {
    async abandoned() {
      await limiter.reward(key, 1).catch(() => {});
    },
  };
}
