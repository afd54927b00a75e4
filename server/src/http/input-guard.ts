import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError, invalidField } from '../errors.js';
import { findUnsafeNumber, findUnsafeText, jsonNestsDeeperThan, MAX_JSON_DEPTH } from '../lib/input-guard.js';

/**
 * Hostile input is refused once, for every route, before any feature sees it (ADR 0015): JSON
 * deeper than MAX_JSON_DEPTH before it is parsed, prototype keys at parse, and NUL, control
 * characters in identifiers in every body, query string, path parameter and header before
 * validation, and numbers beyond ±2^53 after it (validation coerces strings to numbers). Each is a
 * 400 `validation_failed` naming the field.
 */
export function registerInputGuards(app: FastifyInstance): void {
  // Fastify's own parser (secure-json-parse, with protoAction/constructorAction 'error' as the
  // app's options set), behind a depth scan.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (jsonNestsDeeperThan(text, MAX_JSON_DEPTH)) {
      return done(invalidField('body', `nests deeper than ${MAX_JSON_DEPTH} levels`), undefined);
    }
    parseJson(request, text, (error, parsed) => {
      if (error && isPrototypePoisoning(text)) {
        return done(
          new AppError('validation_failed', 'The body holds a __proto__ or constructor.prototype key', {
            details: { fields: [{ field: '__proto__', in: 'body', message: 'is not an allowed key' }] },
          }),
          undefined,
        );
      }
      done(error, parsed);
    });
  });

  const refuse = (found: ReturnType<typeof findUnsafeText>) => {
    if (found) throw invalidField(found.field, found.message, { in: found.in });
  };
  // preValidation: after the body is parsed, before the schema sees it (so no validator, handler
  // or database ever gets NUL), for every route. Credentials read earlier (onRequest) are checked
  // by their own strict formats.
  app.addHook('preValidation', (request: FastifyRequest, _reply, done) => {
    try {
      refuse(findUnsafeText(request.headers, { in: 'headers', values: 'identifier' }));
      refuse(findUnsafeText(request.params, { in: 'params', values: 'identifier' }));
      refuse(findUnsafeText(request.query, { in: 'querystring', values: 'identifier' }));
      refuse(findUnsafeText(request.body, { in: 'body', values: 'text' }));
    } catch (error) {
      return done(error as Error);
    }
    done();
  });
  // preHandler: numbers after validation, which coerces strings to numbers ("Infinity" too).
  app.addHook('preHandler', (request: FastifyRequest, _reply, done) => {
    try {
      refuse(findUnsafeNumber(request.query, 'querystring'));
      refuse(findUnsafeNumber(request.params, 'params'));
      refuse(findUnsafeNumber(request.body, 'body'));
    } catch (error) {
      return done(error as Error);
    }
    done();
  });
}

/** Whether JSON the safe parser refused is valid JSON after all: then it refused a prototype key. */
function isPrototypePoisoning(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
