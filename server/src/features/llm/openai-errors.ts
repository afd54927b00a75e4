import { type TSchema, Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';

// Errors of the OpenAI-compatible routes (/api/llm/v1/*) as OpenAI writes them, so its SDKs
// read them and retry only what a retry can fix (ADR 0014).

/**
 * A limit that resets within this long is worth waiting for: the client is told to retry (after
 * the reset). One that resets later is not: the client is told not to. OpenAI's Python SDK waits
 * for a Retry-After only up to 60 s for the same reason.
 */
export const RETRY_SOON_SECONDS = 60;
/**
 * The longest Retry-After sent. JavaScript timers overflow past 2^31 - 1 ms (24.8 days) and then
 * fire at once; a client that waits a day and asks again gets the next figure.
 */
export const MAX_RETRY_AFTER_SECONDS = 86_400;

/**
 * The error body: OpenAI's `{error: {message, type, param, code}}`, with Gatehouse's own `code`
 * (stable, snake_case), `details` and `requestId` as on every other route.
 */
export const OpenAIErrorBody = Type.Object(
  {
    error: Type.Object({
      message: Type.String(),
      type: Type.String({
        description:
          "OpenAI's error type: invalid_request_error, authentication_error, permission_error, requests (a rate limit), insufficient_quota, upstream_error, server_error",
      }),
      param: Type.Union([Type.String(), Type.Null()], { description: 'The request field at fault, if one is' }),
      code: Type.String({ description: "Gatehouse's error code (docs/README.md)" }),
      details: Type.Optional(Type.Unknown()),
      requestId: Type.String(),
    }),
  },
  { description: "An error in OpenAI's shape" },
);

/** Response entries for the error statuses an OpenAI-compatible route can answer. */
export function openaiErrors(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((status) => [status, OpenAIErrorBody]));
}

/** OpenAI's `type` for a Gatehouse error. */
function typeOf(status: number, code: string): string {
  if (code === 'quota_exceeded') return 'insufficient_quota';
  if (code === 'upstream_unavailable') return 'upstream_error';
  if (status === 429) return 'requests';
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

interface GatehouseError {
  error: { code: string; message: string; details?: { fields?: { field?: string }[] }; requestId: string };
}

const isGatehouseError = (payload: unknown): payload is GatehouseError =>
  typeof payload === 'object' &&
  payload !== null &&
  typeof (payload as GatehouseError).error?.code === 'string' &&
  typeof (payload as GatehouseError).error?.message === 'string';

/**
 * When to try again, as OpenAI's SDKs read it: `x-should-retry` decides (their own default
 * retries every 429 and 5xx), then `retry-after-ms`, then `retry-after`. A limit that resets soon
 * is retried at the reset; one that resets later is not retried at all, and its Retry-After is
 * bounded (MAX_RETRY_AFTER_SECONDS).
 */
function adviseRetry(reply: FastifyReply): void {
  const header = reply.getHeader('retry-after');
  const seconds = Number(header);
  if (header === undefined || !Number.isFinite(seconds) || seconds < 0) return;
  if (seconds <= RETRY_SOON_SECONDS) {
    reply.header('x-should-retry', 'true');
    reply.header('retry-after-ms', String(Math.round(seconds * 1000)));
  } else {
    reply.header('x-should-retry', 'false');
    reply.header('retry-after', String(Math.min(Math.ceil(seconds), MAX_RETRY_AFTER_SECONDS)));
  }
}

/**
 * preSerialization hook of the OpenAI-compatible routes: Gatehouse's errors (from the root error
 * handler, hooks included) leave in OpenAI's shape, with the retry advice. A provider's own error,
 * passed through as the text it sent, is not touched.
 */
export function openaiErrorShape(
  _request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: (error: Error | null, payload?: unknown) => void,
): void {
  if (reply.statusCode < 400 || !isGatehouseError(payload)) {
    done(null, payload);
    return;
  }
  const { code, message, details, requestId } = payload.error;
  if (reply.statusCode === 429 || reply.statusCode === 503) adviseRetry(reply);
  done(null, {
    error: {
      message,
      type: typeOf(reply.statusCode, code),
      param: details?.fields?.[0]?.field ?? null,
      code,
      ...(details !== undefined && { details }),
      requestId,
    },
  });
}
