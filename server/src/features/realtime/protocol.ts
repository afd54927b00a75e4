import { AppError, invalidField } from '../../errors.js';
import { jsonNestsDeeperThan } from '../../lib/input-guard.js';

/**
 * What the feed accepts (docs/realtime.md, "Limits"). Every input is hostile: it is bounded in
 * size and depth before it is parsed or echoed (DESIGN, security rules; RFC 6455 §10.4: an
 * endpoint must protect itself against frames and reassembled messages over its limits).
 */
export const LIMITS = {
  /** Largest message before the socket has authenticated: an `auth` with any token we issue fits. */
  unauthenticatedBytes: 8_192,
  /** Largest message after it (an LLM request carries its prompt), and what `ws` itself enforces. */
  authenticatedBytes: 1_048_576,
  /** Objects and arrays nested deeper than this are refused, checked before parsing. */
  depth: 32,
  /** A `ping`'s `data` is echoed (after authentication only) up to this size as JSON. */
  echoBytes: 1_024,
  correlationIdLength: 128,
  tokenLength: 4_096,
} as const;

/** A message from a client, once its envelope is known to be well formed. */
export interface Inbound {
  type: 'auth' | 'request' | 'ping';
  data: unknown;
  correlationId?: string;
}

export type Parsed =
  | { ok: true; message: Inbound }
  /** `tooBig`: the message is over the size bound for the socket's state (closed with 1009). */
  | { ok: false; error: AppError; correlationId?: string; tooBig?: boolean };

const TYPES = new Set(['auth', 'request', 'ping']);

const envelopeHint = 'Messages are JSON objects: {"type", "data", "correlationId"?}';

/**
 * Reads one WebSocket message, cheapest checks first: binary, size (by state), nesting depth (by
 * a scan of the text, so no deep value is ever built), JSON, then the envelope's fields.
 */
export function parseMessage(raw: Buffer | ArrayBuffer | Buffer[], isBinary: boolean, authenticated: boolean): Parsed {
  if (isBinary) {
    return { ok: false, error: new AppError('invalid_request', `Binary messages are not accepted. ${envelopeHint}`) };
  }
  const bytes = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
  const limit = authenticated ? LIMITS.authenticatedBytes : LIMITS.unauthenticatedBytes;
  if (bytes.byteLength > limit) {
    return {
      ok: false,
      tooBig: true,
      error: new AppError(
        'payload_too_large',
        `Messages are at most ${limit} bytes ${authenticated ? '' : 'before authentication'}`.trim(),
        { details: { max_bytes: limit } },
      ),
    };
  }
  const text = bytes.toString('utf8');
  if (jsonNestsDeeperThan(text, LIMITS.depth)) {
    return {
      ok: false,
      error: new AppError('invalid_request', `Messages may nest objects and arrays at most ${LIMITS.depth} deep`, {
        details: { max_depth: LIMITS.depth },
      }),
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: new AppError('invalid_request', `The message is not JSON. ${envelopeHint}`) };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: new AppError('invalid_request', envelopeHint) };
  }
  const fields = value as Record<string, unknown>;
  const { correlationId, type } = fields;
  if (
    correlationId !== undefined &&
    !(
      typeof correlationId === 'string' &&
      correlationId.length > 0 &&
      correlationId.length <= LIMITS.correlationIdLength
    )
  ) {
    return {
      ok: false,
      error: invalidField('correlationId', `must be a string of 1 to ${LIMITS.correlationIdLength} characters`),
    };
  }
  if (typeof type !== 'string' || !TYPES.has(type)) {
    return {
      ok: false,
      correlationId,
      error: invalidField('type', 'must be one of auth, request, ping (update and complete come from the server)'),
    };
  }
  return { ok: true, message: { type: type as Inbound['type'], data: fields.data, correlationId } };
}

/** True when a parsed value nests objects and arrays deeper than `max` (iterative: no stack to overflow). */
export function depthExceeds(value: unknown, max: number): boolean {
  const pending: [unknown, number][] = [[value, 0]];
  while (pending.length > 0) {
    const [node, depth] = pending.pop() as [unknown, number];
    if (typeof node !== 'object' || node === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Object.values(node)) pending.push([child, depth + 1]);
  }
  return false;
}
