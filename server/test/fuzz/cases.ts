import { randomBytes } from 'node:crypto';
import { STRONG_PASSWORD } from '../harness.js';
import {
  BAD_CONTENT_TYPES,
  BAD_JSON,
  BAD_NUMBERS,
  CONTROL_CHARACTERS,
  deepJson,
  type Known,
  leaves,
  pick,
  RAW_NUMBERS,
  REMOVE,
  type Rng,
  resolve,
  type Schema,
  setAt,
  validValue,
  WRONG_TYPES,
} from './inputs.js';
import { MODEL, type World } from './world.js';

/** One request of the fuzz suite, as sent. */
export interface Case {
  /** What was broken, for the report. */
  what: string;
  method: string;
  /** Path and query string, percent-encoded. */
  url: string;
  headers: Record<string, string>;
  body?: string;
  /** 'inject' for what no real client can put on the wire (control characters in headers). */
  transport: 'socket' | 'inject';
}

export interface Operation {
  method: string;
  /** The OpenAPI path, `{id}` style. */
  path: string;
  parameters: { name: string; in: 'path' | 'query' | 'header'; required?: boolean; schema: Schema }[];
  body?: Schema;
  /** Who may call it (the route's config.auth). */
  auth: 'public' | readonly string[];
}

/** Field names whose valid value comes from the world rather than the schema. */
function knownValues(world: World, rng: Rng): Known {
  return {
    user_id: () => world.userId,
    email: () => `fuzz-${Math.floor(rng() * 1e9)}@example.com`,
    password: () => STRONG_PASSWORD,
    current_password: () => STRONG_PASSWORD,
    new_password: () => `${STRONG_PASSWORD} again`,
    key: () => world.credentials.userKey,
    refresh_token: () => world.refreshToken,
    event_id: () => world.ids.event,
    plan: () => world.ids.planName,
    service: () => world.service,
    model: () => MODEL,
    provider: () => 'fake',
    // Every URL a case sends points at a local fake: nothing leaves loopback.
    base_url: () => world.urls.llm,
    url: () => world.urls.receiver,
    issuer: () => world.urls.oidc,
    authorization_endpoint: () => `${world.urls.oidc}/auth`,
    token_endpoint: () => `${world.urls.oidc}/token`,
    revocation_endpoint: () => `${world.urls.oidc}/token/revocation`,
    userinfo_endpoint: () => `${world.urls.oidc}/me`,
    redirect_uri: () => world.redirectUri,
    redirect_after: () => world.redirectUri,
    tenant: () => world.publishableKey,
    device_code: () => world.deviceCode,
    grant_type: () => 'urn:ietf:params:oauth:grant-type:device_code',
    messages: () => [{ role: 'user', content: 'Say hi' }],
    prompt: () => 'Say hi',
    max_tokens: () => 16,
    since: () => new Date(Date.now() - 3_600_000).toISOString(),
    from: () => new Date(Date.now() - 86_400_000).toISOString(),
    to: () => new Date().toISOString(),
    code_challenge: () => 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: () => 'S256',
  };
}

/** The credential headers a case sends: one of the principals the route accepts. */
function credentialFor(op: Operation, world: World, rng: Rng): Record<string, string> {
  if (op.auth === 'public') return { 'x-gatehouse-tenant': world.publishableKey };
  const options: Record<string, string>[] = [];
  const bearer = (token: string, extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${token}`,
    ...extra,
  });
  if (op.auth.includes('user')) options.push(bearer(world.credentials.userJwt), bearer(world.credentials.userKey));
  if (op.auth.includes('admin')) options.push(bearer(world.credentials.admin));
  if (op.auth.includes('service')) options.push(bearer(world.credentials.service));
  if (options.length === 0) options.push(bearer(world.credentials.operator, { 'x-gatehouse-tenant': world.tenantId }));
  return pick(rng, options);
}

/** Fills `{id}`-style parameters, percent-encoding each. */
function fillPath(path: string, values: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(values[name] ?? 'fuzz'));
}

const query = (params: Record<string, unknown>) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of [value].flat()) search.append(key, typeof item === 'string' ? item : JSON.stringify(item));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
};

/** A string leaf of `value` (a path to it), or null. */
function stringLeaf(value: unknown, rng: Rng) {
  const found = leaves(value).filter((leaf) => typeof leaf.value === 'string');
  return found.length ? pick(rng, found) : null;
}

/**
 * Cases for one operation: the valid request first, then the valid request broken in one known way
 * each: body, query, path and header mutations, chosen at random from those that apply.
 */
export function casesFor(
  op: Operation,
  components: Record<string, Schema>,
  world: World,
  rng: Rng,
  count: number,
  pathValues: Record<string, string>,
): Case[] {
  const known = knownValues(world, rng);
  const bodySchema = op.body ? resolve(op.body, components) : undefined;
  const queryParams = op.parameters.filter((p) => p.in === 'query');
  const base = () => {
    const params: Record<string, unknown> = {};
    for (const p of queryParams) {
      if (p.required || rng() < 0.5) params[p.name] = validValue(p.schema, components, rng, known, p.name);
    }
    const body = bodySchema ? validValue(bodySchema, components, rng, known) : undefined;
    return { params, body, headers: credentialFor(op, world, rng), pathValues: { ...pathValues } };
  };
  const build = (
    what: string,
    parts: ReturnType<typeof base>,
    raw?: { body?: string; contentType?: string | null },
  ): Case => {
    const headers = { ...parts.headers };
    let body: string | undefined;
    if (raw?.body !== undefined) body = raw.body;
    else if (parts.body !== undefined) body = JSON.stringify(parts.body);
    if (body !== undefined && raw?.contentType !== null)
      headers['content-type'] = raw?.contentType ?? 'application/json';
    return {
      what,
      method: op.method,
      url: `${fillPath(op.path, parts.pathValues)}${query(parts.params)}`,
      headers,
      body,
      transport: 'socket',
    };
  };

  const mutations: (() => Case)[] = [];
  if (bodySchema) {
    const body = (what: string, change: (b: unknown) => unknown) => () => {
      const parts = base();
      return build(what, { ...parts, body: change(parts.body) });
    };
    const raw = (what: string, text: (b: unknown) => string, contentType?: string | null) => () => {
      const parts = base();
      return build(what, parts, { body: text(parts.body), contentType });
    };
    const required: string[] = bodySchema.required ?? [];
    if (required.length) {
      mutations.push(body('a required field missing', (b) => setAt(b, [pick(rng, required)], REMOVE)));
    }
    mutations.push(
      body('an extra field', (b) => ({ ...(b as object), fuzz_extra: 'x' })),
      body('a wrong type', (b) => {
        const leaf = pick(rng, leaves(b));
        return setAt(b, leaf.path, pick(rng, WRONG_TYPES));
      }),
      body('a huge string', (b) => {
        const leaf = stringLeaf(b, rng);
        return leaf ? setAt(b, leaf.path, 'A'.repeat(200_000)) : { ...(b as object), fuzz: 'A'.repeat(200_000) };
      }),
      body('a huge array', (b) => {
        const leaf = pick(rng, leaves(b));
        return setAt(
          b,
          leaf.path,
          Array.from({ length: 20_000 }, () => leaf.value ?? 1),
        );
      }),
      body('a control character', (b) => {
        const leaf = stringLeaf(b, rng);
        const c = pick(rng, CONTROL_CHARACTERS);
        return leaf
          ? setAt(b, leaf.path, `${String(leaf.value).slice(0, 3)}${c}x`)
          : { ...(b as object), [`k${c}`]: 1 };
      }),
      body('a control character in a key', (b) => ({ ...(b as object), [`fu${pick(rng, CONTROL_CHARACTERS)}zz`]: 1 })),
      body('an out-of-range number', (b) => {
        const leaf = pick(
          rng,
          leaves(b).filter((l) => l.path.length > 0),
        );
        return leaf ? setAt(b, leaf.path, pick(rng, BAD_NUMBERS)) : b;
      }),
      body('a value 40 levels deep', (b) => {
        const leaf = pick(rng, leaves(b));
        return setAt(b, leaf.path, JSON.parse(deepJson(40, rng() < 0.5 ? 'array' : 'object')));
      }),
      raw('a value 100 levels deep', (b) => JSON.stringify(b).replace(/^\{/, `{"fuzz":${deepJson(100)},`)),
      raw('a value 5,000 levels deep', (b) => JSON.stringify(b).replace(/^\{/, `{"fuzz":${deepJson(5000, 'object')},`)),
      raw('a __proto__ key', (b) =>
        JSON.stringify(b).replace(/^\{/, '{"__proto__":{"role":"operator","isAdmin":true},'),
      ),
      raw('a constructor.prototype key', (b) =>
        JSON.stringify(b).replace(/^\{/, '{"constructor":{"prototype":{"role":"operator"}},'),
      ),
      raw('a raw out-of-range number', (b) => {
        const leaf = pick(
          rng,
          leaves(b).filter((l) => l.path.length === 1),
        );
        if (!leaf) return JSON.stringify(b);
        return JSON.stringify(setAt(b, leaf.path, '@@N@@')).replace('"@@N@@"', pick(rng, RAW_NUMBERS));
      }),
      raw('bad JSON', () => pick(rng, BAD_JSON)),
      raw('an empty body', () => ''),
      raw('a body over the size limit', () => `{"fuzz":"${'A'.repeat(1_100_000)}"}`),
      () => {
        const parts = base();
        const contentType = pick(rng, BAD_CONTENT_TYPES);
        return build(`a wrong content type (${contentType})`, parts, { body: JSON.stringify(parts.body), contentType });
      },
      raw('no content type', (b) => JSON.stringify(b), null),
      raw(
        'the body as a form',
        (b) =>
          new URLSearchParams(
            Object.entries((b as Record<string, unknown>) ?? {}).map(([k, v]) => [
              k,
              typeof v === 'string' ? v : JSON.stringify(v),
            ]),
          ).toString(),
        'application/x-www-form-urlencoded',
      ),
    );
  }
  const queryCase = (what: string, change: (p: Record<string, unknown>, name: string) => void) => () => {
    const parts = base();
    const name = queryParams.length ? pick(rng, queryParams).name : 'fuzz';
    change(parts.params, name);
    return build(what, parts);
  };
  mutations.push(
    queryCase('a query parameter of the wrong type', (p, n) => {
      p[n] = pick(rng, ['abc', '-1', '1.5', '99999999999999999999', 'true', '[]', '{}']);
    }),
    queryCase('a control character in a query parameter', (p, n) => {
      p[n] = `a${pick(rng, CONTROL_CHARACTERS)}b`;
    }),
    queryCase('a huge query parameter', (p, n) => {
      p[n] = 'q'.repeat(pick(rng, [5_000, 60_000]));
    }),
    queryCase('a repeated query parameter', (p, n) => {
      p[n] = ['1', '2', 'three'];
    }),
    queryCase('an unknown query parameter', (p) => {
      p.fuzz_unknown = 'x';
      Object.defineProperty(p, '__proto__', { value: 'y', enumerable: true });
    }),
    queryCase('an out-of-range number in the query', (p, n) => {
      p[n] = String(pick(rng, BAD_NUMBERS));
    }),
  );
  const pathParams = op.parameters.filter((p) => p.in === 'path');
  if (pathParams.length) {
    mutations.push(() => {
      const parts = base();
      const name = pick(rng, pathParams).name;
      parts.pathValues[name] = pick(rng, [
        '\u0000',
        `x\u001by`,
        'p'.repeat(pick(rng, [99, 101, 5000])),
        '../../etc/passwd',
        '%zz',
        'ü😀',
        'usr_01j00000000000000000000000',
        ' ',
        '__proto__',
      ]);
      return build('a broken path parameter', parts);
    });
  }
  mutations.push(
    () => {
      const parts = base();
      return build('a huge header', { ...parts, headers: { ...parts.headers, 'x-fuzz': 'h'.repeat(20_000) } });
    },
    () => {
      const parts = base();
      const headers = {
        ...parts.headers,
        authorization: pick(rng, [
          'Bearer',
          'Bearer ',
          `Bearer ${'t'.repeat(10_000)}`,
          'Basic Zm9vOmJhcg==',
          'Bearer gk_fuzz',
          'Bearer gsk_fuzz',
          'Bearer a.b.c',
          `Bearer ${randomBytes(8).toString('hex')}`,
        ]),
      };
      return build('a bad credential', { ...parts, headers });
    },
    () => {
      const parts = base();
      const headers = {
        ...parts.headers,
        'x-gatehouse-tenant': pick(rng, ['pk_fuzz', 'ten_fuzz', '', 'x'.repeat(5000), 'pk_%00']),
      };
      return build('a bad tenant header', { ...parts, headers });
    },
    () => {
      const parts = base();
      const name = pick(rng, [
        'x-gatehouse-tenant',
        'user-agent',
        'authorization',
        'x-forwarded-for',
        'origin',
        'cookie',
      ]);
      const value = `${parts.headers[name] ?? 'v'}${pick(rng, ['\u0000', '\u0001', '\u001b', '\u007f'])}`;
      return {
        ...build('a control character in a header', { ...parts, headers: { ...parts.headers, [name]: value } }),
        transport: 'inject' as const,
      };
    },
    () => {
      const parts = base();
      return build('no credential', { ...parts, headers: {} });
    },
  );

  const cases = [build('the valid request', base())];
  while (cases.length < count) cases.push(pick(rng, mutations)());
  return cases;
}
