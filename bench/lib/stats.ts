/** Milliseconds rounded to 0.01 ms, the resolution the latency children report. */
export const round = (ms: number): number => Math.round(ms * 100) / 100;

/**
 * Nearest rank over values sorted ascending: p99 of 200 values is the 198th smallest, so two
 * slow outliers stay visible only in max. NaN for no values.
 */
export function rank(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

export interface Summary {
  p50: number;
  p99: number;
  max: number;
  mean: number;
  count: number;
}

/** p50, p99, max and mean of milliseconds, 0.01 ms resolution. */
export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: round(rank(sorted, 50)),
    p99: round(rank(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? Number.NaN),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    count: sorted.length,
  };
}
