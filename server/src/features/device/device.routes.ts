import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Deps } from '../../deps.js';
import { AppError, handleError } from '../../errors.js';
import { clientInfo } from '../../http/authenticate.js';
import { pageCookie, pageCsrf, sendPage } from '../../http/pages.js';
import { type App, errors } from '../../http/schemas.js';
import { publicTenant } from '../../http/tenant.js';
import { oauthErrorDescription } from '../../lib/oauth-errors.js';
import { findUser } from '../accounts/accounts.repo.js';
import { User } from '../accounts/accounts.schemas.js';
import { verifySignIn } from '../accounts/accounts.service.js';
import { getTenant } from '../tenants/tenants.service.js';
import { codeForm, confirmForm } from './device.page.js';
import {
  DeviceGrantError,
  decideDevice,
  describeDeviceClient,
  findPendingByUserCode,
  formatUserCode,
  issueDeviceCode,
  pollDeviceToken,
} from './device.service.js';

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';
const CSRF_COOKIE = 'gh_device_csrf';
const SESSION_COOKIE = 'gh_device_session';
/** How long the approval page remembers who signed in on it. */
const PAGE_SESSION_MS = 15 * 60_000;
/** Wrong user codes per address before the page stops looking codes up for a while (RFC 8628 §5.1). */
const GUESSES = { points: 10, duration: 900 };
/** Device codes an address may ask for in ten minutes. */
const ISSUES = { points: 30, duration: 600 };

const DeviceError = Type.Object(
  { error: Type.String(), error_description: Type.String() },
  { description: 'RFC 6749 §5.2 / RFC 8628 §3.5 error' },
);

interface PageSession {
  tenantId: string;
  userId: string;
  expiresAt: number;
}

const limiters = new WeakMap<Deps, { guesses: RateLimiterAbstract; issues: RateLimiterAbstract }>();
function limitersOf(deps: Deps) {
  let found = limiters.get(deps);
  if (!found) {
    found = {
      guesses: deps.limiters.create({ keyPrefix: 'device_guess', ...GUESSES }),
      issues: deps.limiters.create({ keyPrefix: 'device_issue', ...ISSUES }),
    };
    limiters.set(deps, found);
  }
  return found;
}

/**
 * Device sign-in (RFC 8628) for editors and CLIs: the device asks for a code and polls; the
 * person opens the hosted page at `verification_uri`, signs in (or is already signed in there),
 * sees which application asks, and approves or denies.
 */
export function registerDeviceRoutes(app: App, deps: Deps): void {
  const csrf = pageCsrf(deps.config.publicUrl, CSRF_COOKIE);
  const sessionCookie = pageCookie(deps.config.publicUrl, SESSION_COOKIE, 'lax');

  app.post(
    '/api/auth/device/code',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['device'],
        summary: 'RFC 8628 device authorization request: a device code to poll with and a code for the person',
        body: Type.Object(
          {
            client_id: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 64,
                // RFC 6749 Appendix A.1: client_id = *VSCHAR (printable ASCII).
                pattern: '^[\\x20-\\x7E]+$',
                description:
                  'Which application asks. The approval page names the applications Gatehouse knows ' +
                  '(gatehouse-vscode: its VS Code extension); any other id is shown as an unverified claim.',
              }),
            ),
            scope: Type.Optional(Type.String({ maxLength: 256 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            device_code: Type.String(),
            user_code: Type.String(),
            verification_uri: Type.String(),
            verification_uri_complete: Type.String(),
            expires_in: Type.Integer(),
            interval: Type.Integer(),
          }),
          ...errors(400, 429),
        },
      },
    },
    async (request) => {
      const tenant = await publicTenant(deps, request);
      try {
        await limitersOf(deps).issues.consume(request.ip ?? '-');
      } catch {
        throw new AppError('rate_limited', 'Too many device codes requested from this address; wait a few minutes');
      }
      return issueDeviceCode(deps, tenant, request.body.client_id ?? '');
    },
  );

  app.post(
    '/api/auth/device/token',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['device'],
        summary:
          'RFC 8628 device access token request: authorization_pending, slow_down, expired_token, access_denied, or the tokens',
        body: Type.Object({
          grant_type: Type.Optional(Type.String()),
          device_code: Type.Optional(Type.String({ maxLength: 256 })),
          client_id: Type.Optional(Type.String({ maxLength: 64 })),
        }),
        response: {
          200: Type.Object({
            access_token: Type.String(),
            token_type: Type.String(),
            expires_in: Type.Integer(),
            refresh_token: Type.String(),
            user: Type.Ref(User),
          }),
          400: DeviceError,
        },
      },
      // A malformed request (bad JSON or form, wrong types, NUL, too large) is an RFC 6749 §5.2
      // invalid_request, in the body shape every device client parses, never Gatehouse's own.
      errorHandler: (error, request, reply) => {
        const status = error instanceof AppError ? error.status : (error.statusCode ?? 500);
        if (status >= 500) return handleError(error, request, reply);
        return reply
          .status(400)
          .header('cache-control', 'no-store')
          .send({ error: 'invalid_request', error_description: oauthErrorDescription(error.message) });
      },
    },
    async (request, reply) => {
      const { grant_type: grantType, device_code: deviceCode } = request.body;
      try {
        if (grantType !== undefined && grantType !== GRANT_TYPE) {
          throw new DeviceGrantError('unsupported_grant_type', `grant_type must be ${GRANT_TYPE}`);
        }
        if (!deviceCode) throw new DeviceGrantError('invalid_request', 'device_code is required');
        return await pollDeviceToken(deps, deviceCode, clientInfo(request));
      } catch (error) {
        if (!(error instanceof DeviceGrantError)) throw error;
        return reply
          .status(400)
          .header('cache-control', 'no-store')
          .send({ error: error.error, error_description: error.description });
      }
    },
  );

  const pageSession = (request: FastifyRequest): PageSession | null => {
    const sealed = request.cookies[sessionCookie.name];
    if (!sealed) return null;
    try {
      const session = JSON.parse(deps.masterKey.open(sealed, 'device-page').toString('utf8')) as PageSession;
      return session.expiresAt > deps.clock.now() ? session : null;
    } catch {
      return null;
    }
  };

  const signedInUser = async (session: PageSession | null) =>
    session ? await findUser(deps.db.kysely, session.tenantId, session.userId) : undefined;

  const FormBody = Type.Object({
    csrf: Type.Optional(Type.String({ maxLength: 128 })),
    user_code: Type.Optional(Type.String({ maxLength: 32 })),
    email: Type.Optional(Type.String({ maxLength: 320 })),
    password: Type.Optional(Type.String({ maxLength: 1024 })),
    decision: Type.Optional(Type.String({ maxLength: 16 })),
  });
  const page = { tags: ['device'], hide: true } as const;

  app.get(
    '/device',
    {
      config: { auth: 'public' },
      schema: { ...page, querystring: Type.Object({ user_code: Type.Optional(Type.String({ maxLength: 32 })) }) },
    },
    async (request, reply) => {
      const token = csrf.token(request, reply);
      const user = await signedInUser(pageSession(request));
      return sendPage(
        reply,
        200,
        'Sign in on your device',
        codeForm(token, request.query.user_code ?? '', user?.email ?? null),
      );
    },
  );

  /**
   * A form post that failed the CSRF check: a page without a form and without a new token cookie,
   * so a forged post cannot replace the token of the person's own open page.
   */
  const refused = (reply: FastifyReply, code: string) =>
    sendPage(
      reply,
      403,
      'Sign in on your device',
      `<p><a href="/device?user_code=${encodeURIComponent(code)}">Start again</a></p>`,
      'This form expired or came from another site; try again.',
    );

  app.post('/device', { config: { auth: 'public' }, schema: { ...page, body: FormBody } }, async (request, reply) => {
    const { user_code: code = '', email, password } = request.body;
    if (!csrf.check(request)) return refused(reply, code);
    const token = csrf.token(request, reply);
    const session = pageSession(request);
    const again = (status: number, error: string, user?: { email: string } | null) =>
      sendPage(reply, status, 'Sign in on your device', codeForm(token, code, user?.email ?? null), error);
    const { guesses } = limitersOf(deps);
    const ip = request.ip ?? '-';
    const seen = await guesses.get(ip);
    if (seen && seen.consumedPoints >= GUESSES.points) {
      return again(429, 'Too many wrong codes from this address; wait a few minutes and try again.');
    }
    const row = await findPendingByUserCode(deps, code);
    if (!row) {
      await guesses.consume(ip).catch(() => undefined);
      return again(400, 'That code is not valid, or it expired. Check the code on your device.');
    }
    let user = await signedInUser(session?.tenantId === row.tenant_id ? session : null);
    if (email || password) {
      const tenant = await getTenant(deps, row.tenant_id);
      if (!tenant) return again(400, 'That code is not valid, or it expired. Check the code on your device.');
      try {
        user = (await verifySignIn(deps, tenant, { email: email ?? '', password: password ?? '' }, clientInfo(request)))
          .user;
      } catch (error) {
        if (!(error instanceof AppError)) throw error;
        return again(error.status, error.message);
      }
      reply.setCookie(
        sessionCookie.name,
        deps.masterKey.seal(
          JSON.stringify({ tenantId: tenant.id, userId: user.id, expiresAt: deps.clock.now() + PAGE_SESSION_MS }),
          'device-page',
        ),
        { ...sessionCookie.options, maxAge: PAGE_SESSION_MS / 1000 },
      );
    }
    if (!user || user.disabled_at !== null) return again(401, 'Sign in with your email and password to approve.');
    const tenant = await getTenant(deps, row.tenant_id);
    return sendPage(
      reply,
      200,
      'Approve this sign-in?',
      confirmForm(
        token,
        formatUserCode(row.user_code),
        describeDeviceClient(row.client_id),
        user.email,
        tenant?.name ?? '',
      ),
    );
  });

  app.post(
    '/device/decision',
    { config: { auth: 'public' }, schema: { ...page, body: FormBody } },
    async (request, reply) => {
      const { user_code: code = '', decision } = request.body;
      if (!csrf.check(request)) return refused(reply, code);
      const token = csrf.token(request, reply);
      const restart = (status: number, error: string) =>
        sendPage(reply, status, 'Sign in on your device', codeForm(token, code, null), error);
      if (decision !== 'approve' && decision !== 'deny') return restart(400, 'Choose Approve or Deny.');
      const row = await findPendingByUserCode(deps, code);
      if (!row) return restart(400, 'That code is not valid, or it expired. Start again on your device.');
      const session = pageSession(request);
      const user = await signedInUser(session?.tenantId === row.tenant_id ? session : null);
      if (!user || user.disabled_at !== null) return restart(401, 'Sign in again to approve.');
      try {
        await decideDevice(deps, row, user.id, decision, clientInfo(request));
      } catch (error) {
        if (error instanceof AppError) return restart(error.status, error.message);
        throw error;
      }
      return decision === 'approve'
        ? sendPage(reply, 200, 'Approved', '<p>You can go back to your device now.</p>')
        : sendPage(reply, 200, 'Denied', '<p>The device was not signed in. You can close this page.</p>');
    },
  );
}
