// Inputs for the HTTP fuzz suite, derived from the OpenAPI document: a valid value for a schema,
// and the known ways to break one. Everything random comes from one seeded generator.

// biome-ignore lint/suspicious/noExplicitAny: JSON Schema as the OpenAPI document holds it.
export type Schema = Record<string, any>;
export type Rng = () => number;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seed for one route, from the run's seed and the route, so each route replays on its own. */
export function routeSeed(seed: number, route: string): number {
  let hash = seed >>> 0;
  for (let i = 0; i < route.length; i++) hash = Math.imul(hash ^ route.charCodeAt(i), 16777619) >>> 0;
  return hash;
}

export const pick = <T>(rng: Rng, list: readonly T[]): T => list[Math.floor(rng() * list.length)];

/** Follows `$ref: '#/components/schemas/X'` (and the `def-N`/$id names swagger gives shared schemas). */
export function resolve(schema: Schema | undefined, components: Record<string, Schema>): Schema {
  let current = schema ?? {};
  for (let i = 0; i < 10 && typeof current.$ref === 'string'; i++) {
    current = components[current.$ref.split('/').at(-1) as string] ?? {};
  }
  return current;
}

/** Values that mean something in the world a case runs in (ids, names, URLs), by field name. */
export type Known = Record<string, () => unknown>;

const STRING_CANDIDATES = ['fuzz', 'fuzz-1', 'fuzz_1', 'a', 'abc', 'requests', 'gpt-test', 'x1', 'A1', 'pending'];

function stringFor(schema: Schema, rng: Rng): string {
  if (schema.format === 'email') return `fuzz-${Math.floor(rng() * 1e9)}@example.com`;
  if (schema.format === 'date-time') return new Date().toISOString();
  if (schema.format === 'uri') return 'https://app.example.com/back';
  const min = schema.minLength ?? 0;
  const max = schema.maxLength ?? 64;
  const fits = (s: string) => s.length >= min && s.length <= max;
  if (schema.pattern) {
    const pattern = new RegExp(schema.pattern);
    const found = STRING_CANDIDATES.find((s) => pattern.test(s) && fits(s));
    if (found) return found;
  }
  const base = pick(rng, STRING_CANDIDATES);
  return fits(base) ? base : 'a'.repeat(Math.max(min, 1));
}

function numberFor(schema: Schema, rng: Rng, integer: boolean): number {
  const min = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 0);
  const max = Math.min(schema.maximum ?? min + 100, min + 100);
  const value = min + rng() * (max - min);
  return integer ? Math.floor(value) : Math.round(value * 100) / 100;
}

/** Fields never filled in a valid value: presets point at real providers on the internet. */
const NEVER = new Set(['preset']);

/** A valid value for `schema` (as far as a schema says), with world values for known field names. */
export function validValue(
  schema: Schema | undefined,
  components: Record<string, Schema>,
  rng: Rng,
  known: Known,
  name = '',
  depth = 0,
): unknown {
  const s = resolve(schema, components);
  if (name && known[name]) return known[name]();
  if (s.const !== undefined) return s.const;
  if (Array.isArray(s.enum)) return pick(rng, s.enum);
  const choices = s.anyOf ?? s.oneOf;
  if (Array.isArray(choices)) {
    const nonNull = choices.filter((c: Schema) => resolve(c, components).type !== 'null');
    return validValue(pick(rng, nonNull.length ? nonNull : choices), components, rng, known, name, depth);
  }
  if (s.default !== undefined && rng() < 0.3) return s.default;
  const type = Array.isArray(s.type) ? (s.type.find((t: string) => t !== 'null') ?? 'null') : s.type;
  switch (type) {
    case 'string':
      return stringFor(s, rng);
    case 'integer':
      return numberFor(s, rng, true);
    case 'number':
      return numberFor(s, rng, false);
    case 'boolean':
      return rng() < 0.5;
    case 'null':
      return null;
    case 'array': {
      const count = Math.max(s.minItems ?? 0, depth > 3 ? 0 : 1);
      return Array.from({ length: count }, () => validValue(s.items, components, rng, known, '', depth + 1));
    }
    case 'object':
    case undefined: {
      if (type === undefined && !s.properties) return depth > 3 ? 'x' : { note: 'fuzz' };
      const out: Record<string, unknown> = {};
      const required = new Set<string>(s.required ?? []);
      for (const [key, property] of Object.entries<Schema>(s.properties ?? {})) {
        if (NEVER.has(key)) continue;
        if (required.has(key) || rng() < 0.5) out[key] = validValue(property, components, rng, known, key, depth + 1);
      }
      return out;
    }
    default:
      return null;
  }
}

/** Every path to a value inside `value` (`[]` is the value itself), each with the value there. */
export function leaves(
  value: unknown,
  path: (string | number)[] = [],
): { path: (string | number)[]; value: unknown }[] {
  const here = [{ path, value }];
  if (Array.isArray(value)) return [...here, ...value.flatMap((item, i) => leaves(item, [...path, i]))];
  if (value && typeof value === 'object') {
    return [...here, ...Object.entries(value).flatMap(([key, item]) => leaves(item, [...path, key]))];
  }
  return here;
}

/** A copy of `value` with the value at `path` replaced (or removed when `replacement` is REMOVE). */
export const REMOVE = Symbol('remove');
export function setAt(value: unknown, path: (string | number)[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const [head, ...rest] = path;
  if (Array.isArray(value)) {
    const copy = [...value];
    if (rest.length === 0 && replacement === REMOVE) copy.splice(head as number, 1);
    else copy[head as number] = setAt(copy[head as number], rest, replacement);
    return copy;
  }
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  if (rest.length === 0 && replacement === REMOVE) delete copy[head];
  else copy[head] = setAt(copy[head], rest, replacement);
  return copy;
}

/** Values of the wrong type for whatever was there. */
export const WRONG_TYPES: unknown[] = [
  123,
  -1,
  1.5,
  'a string',
  true,
  false,
  null,
  [],
  [1, 'a'],
  {},
  { a: { b: 1 } },
  '',
];

/** Numbers (and number-like strings) that break arithmetic, columns and timers. */
export const BAD_NUMBERS: unknown[] = [
  2 ** 31,
  2 ** 31 - 1,
  -(2 ** 31) - 1,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 63,
  -(2 ** 63),
  1e308,
  -1e308,
  Number.MIN_VALUE,
  -1,
  0,
  -0,
  0.5,
  'NaN',
  'Infinity',
  '-Infinity',
  '1e400',
  '0x10',
  ' 1',
  '',
];

/** Raw number texts JSON.parse turns into values no column holds. */
export const RAW_NUMBERS = ['1e400', '-1e400', '1e-400', '123456789012345678901234567890', '-0', '1.0e+309'];

/** Characters to slip into strings. */
export const CONTROL_CHARACTERS = [
  '\u0000',
  '\u0001',
  '\u0008',
  '\u000b',
  '\u001b[31m',
  '\u007f',
  '\r\n',
  '\u0085',
  '\u2028',
  '\ufeff',
  '\ud800',
  '\udfff',
  '%00',
  '\\u0000',
];

/** Bodies that are not JSON, or not what the route wants. */
export const BAD_JSON = [
  '{',
  '}',
  '{"a":}',
  '{"a":1,}',
  "{'a':1}",
  '{"a":1}garbage',
  '[1,2',
  '"just a string"',
  'null',
  '123',
  '[]',
  '\u0000',
  '\ufeff{}',
  '{"a":"\\ud800"}',
  '{"a":"\\u0000"}',
  `{"a":${'1'.repeat(5000)}}`,
  '{"a":1,"a":2}',
  'true',
  ' ',
];

export const BAD_CONTENT_TYPES = [
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=fuzz',
  'application/json; charset=utf-16',
  'application/JSON',
  'application/json, text/html',
  'application/octet-stream',
  'application/merge-patch+json',
  '*/*',
  '',
];

/** JSON text nested `depth` levels deep: arrays, or objects. */
export const deepJson = (depth: number, kind: 'array' | 'object' = 'array') =>
  kind === 'array' ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
