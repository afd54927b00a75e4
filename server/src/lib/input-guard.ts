/**
 * Checks every request input must pass before any feature sees it (ADR 0015): JSON nests at most
 * {@link MAX_JSON_DEPTH} levels, no string holds NUL (PostgreSQL text cannot store it, so SQLite
 * refuses it too and both dialects answer alike), identifiers hold no other control characters,
 * numbers are safe integers or finite values within ±2^53, and no key is `__proto__`.
 */

/** The deepest nesting of objects and arrays a request body may have (OWASP ASVS 5.0 V1.5.3: bounded input). */
export const MAX_JSON_DEPTH = 64;

/**
 * True when JSON text nests objects or arrays deeper than `max`: one pass over the text before it
 * is parsed, so a body 5,000 levels deep never reaches `JSON.parse`, the validator or
 * `JSON.stringify` (each of which recurses). Brackets inside strings do not count.
 */
export function jsonNestsDeeperThan(text: string, max: number): boolean {
  if (text.length <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** Where an input came from, as `details.fields[].in` says it. */
export type InputPart = 'body' | 'querystring' | 'params' | 'headers';

export interface UnsafeInput {
  field: string;
  in: InputPart;
  message: string;
}

// NUL anywhere; the other C0 controls and DEL (TAB, LF and CR are text) where only identifiers go.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const NUL = /\u0000/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const FORBIDDEN_KEY = '__proto__';

export interface InspectOptions {
  in: InputPart;
  /**
   * 'text': values may be free text (names, descriptions, prompts, vault data): only NUL is
   * refused in them. 'identifier': every control character but TAB, LF and CR is refused (query
   * strings, path parameters, header values, and object keys everywhere).
   */
  values: 'text' | 'identifier';
}

/**
 * The first unsafe string or key of a parsed input, or null: a string with NUL (or, in
 * identifiers, another control character), or a key that is `__proto__` or holds a control
 * character. Fields are named the way validation names them (`messages.0.content`). Recursion is
 * bounded by {@link MAX_JSON_DEPTH}, checked before parsing.
 */
export function findUnsafeText(value: unknown, options: InspectOptions): UnsafeInput | null {
  return walk(value, '', options.in, (item) => {
    if (typeof item !== 'string') return null;
    if (NUL.test(item)) return 'must not contain NUL (U+0000)';
    if (options.values === 'identifier' && CONTROL.test(item)) return 'must not contain control characters';
    return null;
  });
}

/**
 * The first number beyond ±2^53 - 1 in an input, or null: Infinity from `1e400` in JSON, or from
 * "Infinity" in a query string that validation coerced (Ajv counts Infinity as an integer and
 * then skips minimum and maximum for it), and integers no column or arithmetic holds exactly.
 */
export function findUnsafeNumber(value: unknown, part: InputPart): UnsafeInput | null {
  return walk(value, '', part, (item) =>
    typeof item === 'number' && !(Math.abs(item) <= Number.MAX_SAFE_INTEGER)
      ? 'is out of range (at most ±2^53 - 1)'
      : null,
  );
}

/** Visits every value and key of a parsed input; the first problem found, with its field. */
function walk(
  value: unknown,
  path: string,
  part: InputPart,
  check: (value: unknown) => string | null,
): UnsafeInput | null {
  const at = (field: string, message: string): UnsafeInput => ({ field: field || part, in: part, message });
  const problem = check(value);
  if (problem) return at(path, problem);
  if (value === null || typeof value !== 'object') return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = walk(value[i], path ? `${path}.${i}` : String(i), part, check);
      if (found) return found;
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    const field = path ? `${path}.${key}` : key;
    if (key === FORBIDDEN_KEY) return at(field, 'is not an allowed key');
    if (CONTROL.test(key)) return at(path, 'has a key with control characters');
    const found = walk((value as Record<string, unknown>)[key], field, part, check);
    if (found) return found;
  }
  return null;
}
