import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isDatabaseUnavailable } from './db/unavailable.js';
import { HasherOverloadedError } from './lib/password-hasher.js';

/**
 * Error codes are public API: clients branch on them. Add a code when a client must; never
 * rename one. Each maps to exactly one HTTP status.
 */
export const ERROR_STATUS = {
  validation_failed: 400,
  invalid_request: 400,
  invalid_tenant: 400,
  weak_password: 400,
  unauthorized: 401,
  invalid_token: 401,
  invalid_credentials: 401,
  invalid_refresh_token: 401,
  invalid_grant: 400,
  forbidden: 403,
  account_disabled: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  email_taken: 409,
  resource_limit_reached: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  upgrade_required: 426,
  rate_limited: 429,
  quota_exceeded: 429,
  too_many_attempts: 429,
  internal_error: 500,
  integrity_failure: 500,
  upstream_unavailable: 502,
  overloaded: 503,
  not_ready: 503,
  limits_unavailable: 503,
  database_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly options: { details?: unknown; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.status = ERROR_STATUS[code];
  }
}

/** 400 validation_failed naming one field (DESIGN: bad input gets a 400 that names the field). */
export function invalidField(
  field: string,
  message: string,
  options: { in?: 'body' | 'querystring' | 'params' | 'headers'; summary?: string } = {},
): AppError {
  return new AppError('validation_failed', options.summary ?? `${field} ${message}`, {
    details: { fields: [{ field, in: options.in ?? 'body', message }] },
  });
}

export function notFound(what: string): AppError {
  return new AppError('not_found', `${what} not found`);
}

interface ValidationIssue {
  instancePath?: string;
  message?: string;
  params?: { missingProperty?: string; additionalProperty?: string };
}

/** Turns Ajv's output into `[{field, message}]`, naming the field a client got wrong. */
function describeValidation(context: string | undefined, issues: ValidationIssue[]) {
  return issues.map((issue) => {
    const path = (issue.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
    const extra = issue.params?.missingProperty ?? issue.params?.additionalProperty;
    const field = [path, extra].filter(Boolean).join('.') || context || 'body';
    const message = issue.params?.additionalProperty ? 'is not an allowed field' : (issue.message ?? 'is invalid');
    return { field, in: context ?? 'body', message };
  });
}

/** The single root error handler: AppError, validation, Fastify's own 4xx, and everything else. */
export function handleError(error: FastifyError | AppError, request: FastifyRequest, reply: FastifyReply) {
  const requestId = request.id;
  const send = (status: number, code: string, message: string, details?: unknown, headers?: Record<string, string>) => {
    if (headers) reply.headers(headers);
    return reply
      .status(status)
      .send({ error: { code, message, ...(details !== undefined && { details }), requestId } });
  };
  if (error instanceof AppError) {
    if (error.status >= 500) request.log.error({ err: error.cause ?? error }, error.message);
    return send(error.status, error.code, error.message, error.options.details, error.options.headers);
  }
  if (error instanceof HasherOverloadedError) {
    // Seed 002's timeouts came from queueing without bound: refuse at once and say when to retry.
    return send(503, 'overloaded', 'Too many sign-ins at once; retry shortly', undefined, { 'retry-after': '1' });
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const fields = describeValidation(fastifyError.validationContext, fastifyError.validation as ValidationIssue[]);
    const summary = fields.map((f) => `${f.field} ${f.message}`).join('; ');
    return send(400, 'validation_failed', `Invalid request: ${summary}`, { fields });
  }
  const status = fastifyError.statusCode ?? 500;
  if (status === 413) return send(413, 'payload_too_large', 'Request body is too large');
  if (status === 415) return send(415, 'unsupported_media_type', 'Unsupported Content-Type');
  if (status === 405) return send(405, 'method_not_allowed', 'Method not allowed');
  if (status >= 400 && status < 500) {
    // Fastify's own client errors (bad JSON, empty body...): their messages are safe to show.
    return send(status, 'invalid_request', fastifyError.message);
  }
  if (isDatabaseUnavailable(error)) {
    // Down, restarting, failing over or hung: the client may retry, here or on another instance.
    request.log.error({ err: error }, 'database unavailable');
    return send(503, 'database_unavailable', 'The database is unavailable; retry shortly', undefined, {
      'retry-after': '5',
    });
  }
  request.log.error({ err: error }, 'unhandled error');
  return send(500, 'internal_error', 'Internal server error');
}
