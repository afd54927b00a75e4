/**
 * True when `error` (or one of its causes) says the database cannot be reached or did not answer
 * in time, as opposed to a query it refused: the connection was refused, reset or cut, the
 * server is shutting down or starting, too many connections, a connect, statement or read
 * timeout. Requests that meet one answer 503 `database_unavailable` with Retry-After instead of
 * 500, and the pool drops the connection it happened on (docs/operations.md, "When the database
 * goes away").
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let cause = error, depth = 0; cause != null && depth < 5; depth++) {
    if (isUnavailableError(cause)) return true;
    cause = (cause as { cause?: unknown }).cause;
  }
  return false;
}

/** pg's own messages for a connection that went away or never answered (it gives them no code). */
const PG_CLIENT_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'is not queryable',
  'Client network socket disconnected',
];

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/**
 * PostgreSQL SQLSTATEs (Appendix A of its manual): class 08 connection exceptions, 57P01
 * admin_shutdown (pg_terminate_backend, a fast shutdown), 57P02 crash_shutdown, 57P03
 * cannot_connect_now (starting up, recovering), 53300 too_many_connections, 57014
 * query_canceled (statement_timeout).
 */
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '57014']);

function isUnavailableError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) {
    return true;
  }
  return typeof message === 'string' && PG_CLIENT_MESSAGES.some((text) => message.includes(text));
}
