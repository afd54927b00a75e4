import type { TokenPeriod } from '../../db/schema.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export interface Period {
  start: number;
  end: number;
}

/** The UTC calendar period (month, ISO week starting Monday, or day) that contains `at`. */
export function periodAt(kind: TokenPeriod, at: number): Period {
  const date = new Date(at);
  const y = date.getUTCFullYear();
  const m = date.getUTCMonth();
  const d = date.getUTCDate();
  if (kind === 'month') return { start: Date.UTC(y, m, 1), end: Date.UTC(y, m + 1, 1) };
  const day = Date.UTC(y, m, d);
  if (kind === 'day') return { start: day, end: day + DAY };
  const sinceMonday = (date.getUTCDay() + 6) % 7;
  return { start: day - sinceMonday * DAY, end: day + (7 - sinceMonday) * DAY };
}

/** Start of the UTC hour or day bucket that contains `at`. */
export function bucketStart(granularity: 'hour' | 'day', at: number): number {
  const size = granularity === 'hour' ? HOUR : DAY;
  return at - (((at % size) + size) % size);
}
