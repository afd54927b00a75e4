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
 * The first unsafe part of a parsed input, or null: a string with NUL (or, in identifiers, another
 * control character), a key that is `__proto__` or holds a control character, or a number beyond
 * ±2^53 (Infinity included: `1e400` parses to it). Fields are named the way validation names
 * them (`messages.0.content`). Recursion is bounded by {@link MAX_JSON_DEPTH}, checked before parsing.
 */
export function findUnsafeInput(value: unknown, options: InspectOptions, path = ''): UnsafeInput | null {
  const at = (field: string, message: string): UnsafeInput => ({ field: field || options.in, in: options.in, message });
  if (typeof value === 'string') {
    if (NUL.test(value)) return at(path, 'must not contain NUL (U+0000)');
    if (options.values === 'identifier' && CONTROL.test(value)) return at(path, 'must not contain control characters');
    return null;
  }
  if (typeof value === 'number') {
    return Math.abs(value) <= Number.MAX_SAFE_INTEGER ? null : at(path, 'is out of range (at most ±2^53 - 1)');
  }
  if (value === null || typeof value !== 'object') return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUnsafeInput(value[i], options, path ? `${path}.${i}` : String(i));
      if (found) return found;
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    const field = path ? `${path}.${key}` : key;
    if (key === FORBIDDEN_KEY) return at(field, 'is not an allowed key');
    if (CONTROL.test(key)) return at(path, 'has a key with control characters');
    const found = findUnsafeInput((value as Record<string, unknown>)[key], options, field);
    if (found) return found;
  }
  return null;
}
