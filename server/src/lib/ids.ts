import { monotonicFactory } from 'ulid';

/** Resource kinds and their id prefixes (DESIGN: ids are prefixed and time-ordered). */
export type IdKind = 'ten' | 'usr' | 'ses' | 'rtk' | 'key' | 'svc' | 'sgk' | 'aud' | 'req';

export interface Ids {
  next(kind: IdKind): string;
}

/** ULID-based ids: lexicographic order is creation order, so they double as list cursors. */
export function createIds(now: () => number): Ids {
  const ulid = monotonicFactory();
  return { next: (kind) => `${kind}_${ulid(now()).toLowerCase()}` };
}
