import { type DestinationStream, type Logger, pino } from 'pino';

/**
 * Paths never written to logs (DESIGN: secrets never logged; tested in logger.test.ts).
 * Request logs carry method, path and ids only: no headers, no bodies, no query values.
 */
const SECRET_FIELDS = [
  'password',
  'current_password',
  'new_password',
  'password_hash',
  'access_token',
  'refresh_token',
  'token',
  'key',
  'secret',
  'api_key',
];

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  // A secret field at the top of a log object, or one level inside it (pino wildcards are one level).
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        req: (req: { method: string; url: string; id: string; ip?: string }) => ({
          method: req.method,
          // Query strings can carry one-time tokens (setup links, OAuth callbacks): keep the path only.
          url: req.url.split('?')[0],
          id: req.id,
          ip: req.ip,
        }),
      },
    },
    destination,
  );
}
