import { randomBytes } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Deps } from '../../deps.js';
import { escapeHtml, pageCookie, pageCsrf, sendPage } from '../../http/pages.js';
import type { App } from '../../http/schemas.js';
import { safeEqual, sha256 } from '../../lib/tokens.js';
import { bindStateToBrowser } from '../oauth/oauth-states.js';
import { describeConnectLink } from './vault-oauth.js';

// The vault's connect link (sendAuthLink) is this page, not the provider's authorization URL. It
// says whose connection it makes, and its Continue binds the flow to this browser: a cookie with a
// random secret whose hash the state keeps; the callback requires it (docs/adr/0017, RFC 9700 §4.7).

const BROWSER_COOKIE = 'gh_vault_browser';
const CSRF_COOKIE = 'gh_vault_csrf';
/** As long as a state lives (10 minutes): the callback must come back within it. */
const BROWSER_COOKIE_MAX_AGE_S = 600;
const SECRET = /^[A-Za-z0-9_-]{43}$/;

/**
 * The cookie that names this browser to the vault's callback. SameSite=Lax: it must come along on
 * the provider's redirect back, a top-level navigation from another site.
 */
export function vaultBrowserCookie(deps: Deps) {
  return pageCookie(deps.config.publicUrl, BROWSER_COOKIE, 'lax');
}

/** This browser's secret, if it has a well-formed one. */
export function vaultBrowserSecret(deps: Deps, request: FastifyRequest): string | undefined {
  const value = request.cookies[vaultBrowserCookie(deps).name];
  return value && SECRET.test(value) ? value : undefined;
}

export function registerVaultConnectPage(app: App, deps: Deps): void {
  const csrf = pageCsrf(deps.config.publicUrl, CSRF_COOKIE);
  const browserCookie = vaultBrowserCookie(deps);
  const TITLE = 'Connect an account';
  const page = { tags: ['vault'], hide: true } as const;
  const State = Type.String({ minLength: 1, maxLength: 512 });

  const gone = (reply: FastifyReply) =>
    sendPage(
      reply,
      400,
      TITLE,
      '<p>Ask the application for a new link.</p>',
      'This link is unknown, expired or already used.',
    );
  const elsewhere = (reply: FastifyReply) =>
    sendPage(
      reply,
      403,
      TITLE,
      '<p>A link works in the one browser that first continued from it. Ask the application for a new link.</p>',
      'This link was already opened in another browser.',
    );
  const mine = (binding: string | null, secret: string | undefined) =>
    binding === null || (secret !== undefined && safeEqual(sha256(secret), binding));

  app.get(
    '/vault/connect',
    { config: { auth: 'public' }, schema: { ...page, querystring: Type.Object({ state: State }) } },
    async (request, reply) => {
      const link = await describeConnectLink(deps, request.query.state);
      if (!link) return gone(reply);
      if (!mine(link.binding, vaultBrowserSecret(deps, request))) return elsewhere(reply);
      const token = csrf.token(request, reply);
      const owner =
        link.ownerEmail !== null
          ? `the account <strong>${escapeHtml(link.ownerEmail)}</strong>`
          : `its user <code>${escapeHtml(link.owner)}</code>`;
      return sendPage(
        reply,
        200,
        `Connect your ${link.service} account`,
        `<p><strong>${escapeHtml(link.tenant)}</strong> asks for access to your <strong>${escapeHtml(link.service)}</strong> account, to keep for ${owner}.</p>` +
          `<p class="note">Continue only if you asked for this yourself and the account named above is yours: whatever you allow next is stored for that account. This link works in this browser only.</p>` +
          `<form method="post" action="/vault/connect">` +
          `<input type="hidden" name="csrf" value="${escapeHtml(token)}">` +
          `<input type="hidden" name="state" value="${escapeHtml(request.query.state)}">` +
          `<button type="submit">Continue to ${escapeHtml(link.service)}</button></form>`,
        undefined,
        // Continue redirects to the provider, which redirects back here and on to the app: any
        // http(s) origin, which the form's own target does not choose (no script, all text escaped).
        { formAction: "'self' https: http:" },
      );
    },
  );

  app.post(
    '/vault/connect',
    {
      config: { auth: 'public' },
      schema: {
        ...page,
        body: Type.Object({
          csrf: Type.Optional(Type.String({ maxLength: 128 })),
          state: Type.Optional(Type.String({ maxLength: 512 })),
        }),
      },
    },
    async (request, reply) => {
      const state = request.body.state ?? '';
      if (!csrf.check(request)) {
        // No new token: a forged post must not replace the one of the person's own open page.
        return sendPage(
          reply,
          403,
          TITLE,
          `<p><a href="/vault/connect?state=${encodeURIComponent(state)}">Start again</a></p>`,
          'This form expired or came from another site; try again.',
        );
      }
      const link = state ? await describeConnectLink(deps, state) : undefined;
      if (!link) return gone(reply);
      const secret = vaultBrowserSecret(deps, request) ?? randomBytes(32).toString('base64url');
      if (!(await bindStateToBrowser(deps, link.stateId, sha256(secret)))) return elsewhere(reply);
      reply.setCookie(browserCookie.name, secret, { ...browserCookie.options, maxAge: BROWSER_COOKIE_MAX_AGE_S });
      return reply.redirect(link.authorizeUrl, 303);
    },
  );
}
