/** Plain-text table: columns padded to their widest cell, numbers (and ratios) right-aligned. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = (cell: string) => /^[\d.,×x<>≥ +%/-]+$/.test(cell) && /\d/.test(cell);
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (numeric(cell) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join(' | ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('-|-');
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

/** A number for the table: thousands grouped, `digits` decimals; '-' when missing. */
export function num(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const verdict = (met: boolean | null): string => (met === null ? 'n/a' : met ? 'PASS' : 'FAIL');
