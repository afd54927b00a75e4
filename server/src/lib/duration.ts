const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses `900`, `900s`, `15m`, `7d`, `250ms` into milliseconds. A bare number means seconds,
 * as in most server settings. Returns null when the text is not a duration.
 */
export function parseDuration(text: string): number | null {
  const match = /^\s*(\d+)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * UNITS[match[2] ?? 's'];
}
