import { randomBytes } from 'node:crypto';
import { monotonicFactory } from 'ulid';

/** Resource kinds and their id prefixes (DESIGN: ids are prefixed and time-ordered). */
export type IdKind =
  | 'ten'
  | 'usr'
  | 'ses'
  | 'rtk'
  | 'key'
  | 'svc'
  | 'sgk'
  | 'aud'
  | 'pln'
  | 'rsv'
  | 'lse'
  | 'use'
  | 'evt'
  | 'prv'
  | 'rte'
  | 'con'
  | 'opr'
  | 'idn'
  | 'whe'
  | 'whd'
  | 'wha'
  | 'dva';

export interface Ids {
  next(kind: IdKind): string;
}

/**
 * A CSPRNG for ulid that draws from a pool of random bytes: ulid asks for one number per
 * character, and its default asks the OS each time (16 system calls per id).
 */
function pooledRandom(): () => number {
  let pool = randomBytes(4096);
  let index = 0;
  return () => {
    if (index === pool.length) {
      pool = randomBytes(4096);
      index = 0;
    }
    return pool[index++] / 256;
  };
}

/** ULID-based ids: lexicographic order is creation order, so they double as list cursors. */
export function createIds(now: () => number): Ids {
  const ulid = monotonicFactory(pooledRandom());
  return { next: (kind) => `${kind}_${ulid(now()).toLowerCase()}` };
}
